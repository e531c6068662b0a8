//! `observability`: the metrics endpoint, readiness and logs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use horizon_shared::config::check::{log_json, log_level};
use horizon_shared::config::{ConfigError, invalid};
use serde::Deserialize;

/// `observability`: metrics endpoint and logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Port of the HTTP endpoint serving `/metrics`, `/healthz`, `/readyz`; 0 disables it.
    pub metrics_port: u16,
    /// Address that endpoint binds.
    pub metrics_bind: String,
    /// Log level when `RUST_LOG` is not set: error, warn, info, debug, trace.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
    /// `/readyz` fails once object-store writes have been failing for this
    /// many seconds (so the load balancer sends new agents elsewhere); 0: never.
    pub unready_after_store_failure_secs: u64,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            metrics_port: 9091,
            metrics_bind: "0.0.0.0".into(),
            log_level: "info".into(),
            log_format: "text".into(),
            unready_after_store_failure_secs: 30,
        }
    }
}

/// The `observability` section after validation.
#[derive(Debug, Clone)]
pub struct ObservabilitySettings {
    /// Metrics endpoint address (`None`: disabled).
    pub metrics_addr: Option<SocketAddr>,
    /// Default log filter, lower case.
    pub log_level: String,
    /// JSON logs.
    pub log_json: bool,
    /// Store failing this long makes `/readyz` fail (`None`: never).
    pub unready_after_store_failure: Option<Duration>,
}

impl ObservabilityConfig {
    /// Checks the section (the log level in any case).
    pub fn validate(&self) -> Result<ObservabilitySettings, ConfigError> {
        let metrics_addr = if self.metrics_port == 0 {
            None
        } else {
            let ip: IpAddr = self.metrics_bind.parse().map_err(|_| {
                invalid(
                    "observability.metrics_bind",
                    format!("{:?} is not an IP address", self.metrics_bind),
                )
            })?;
            Some(SocketAddr::new(ip, self.metrics_port))
        };
        let level = self.log_level.to_ascii_lowercase();
        log_level("observability.log_level", &level)?;
        let log_json = log_json("observability.log_format", &self.log_format)?;
        Ok(ObservabilitySettings {
            metrics_addr,
            log_level: level,
            log_json,
            unready_after_store_failure: (self.unready_after_store_failure_secs > 0)
                .then(|| Duration::from_secs(self.unready_after_store_failure_secs)),
        })
    }
}
