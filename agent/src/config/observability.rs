//! `observability`: the agent's own metrics endpoint and logs.

use std::net::SocketAddr;

use horizon_shared::config::ConfigError;
use horizon_shared::config::check::{log_json, log_level, socket_addr};
use serde::Deserialize;

/// `observability`: the agent's own metrics and logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Address of the HTTP endpoint serving `/metrics` and `/healthz`; empty disables it.
    pub metrics_addr: String,
    /// Log level when `RUST_LOG` is not set: error, warn, info, debug, trace.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            metrics_addr: "127.0.0.1:9102".into(),
            log_level: "info".into(),
            log_format: "text".into(),
        }
    }
}

/// The `observability` section after validation.
#[derive(Debug, Clone)]
pub struct ObservabilitySettings {
    /// Metrics endpoint (`None`: disabled).
    pub metrics_addr: Option<SocketAddr>,
    /// Log level.
    pub log_level: String,
    /// JSON logs.
    pub log_json: bool,
}

impl ObservabilityConfig {
    /// Checks the section (the log level in lower case, as written).
    pub fn validate(&self) -> Result<ObservabilitySettings, ConfigError> {
        let metrics_addr = if self.metrics_addr.is_empty() {
            None
        } else {
            Some(socket_addr(
                "observability.metrics_addr",
                &self.metrics_addr,
            )?)
        };
        log_level("observability.log_level", &self.log_level)?;
        let log_json = log_json("observability.log_format", &self.log_format)?;
        Ok(ObservabilitySettings {
            metrics_addr,
            log_level: self.log_level.clone(),
            log_json,
        })
    }
}
