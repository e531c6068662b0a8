//! `ack`: what an ack promises.

use horizon_shared::config::ConfigError;
use horizon_shared::config::check::one_of;
use serde::Deserialize;

/// `ack`: what an ack promises.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AckConfig {
    /// `durable`: ack once the Parquet object holding the batch is in the
    /// object store. `received`: ack once validated and queued in memory.
    pub mode: String,
}

impl Default for AckConfig {
    fn default() -> Self {
        Self {
            mode: "durable".into(),
        }
    }
}

impl AckConfig {
    /// Checks the section: whether acks wait for the object store.
    pub fn validate(&self) -> Result<bool, ConfigError> {
        one_of(
            "ack.mode",
            &self.mode,
            &[("durable", true), ("received", false)],
        )
    }
}
