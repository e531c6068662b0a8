//! Relay configuration: YAML with `${VAR}` expansion, unknown keys refused,
//! defaults for every key, and validation in one step
//! ([`Config::validate`]) whose errors name the key and the bad value.
//!
//! The sections and keys follow the collector this relay grew from
//! (`server`, `security`, `influxdb`, `parquet`, `limits`, `observability`),
//! extended with `budgets`, `object_store` and `ack`. `infra/config.example.yaml`
//! documents every key. Each section is a file of its own, holding its keys,
//! their defaults and its validation into a settings type; the checks they
//! share (ranges, relations, host names, certificate paths) and the loader
//! are in `horizon_shared::config`.

use std::path::Path;

use serde::Deserialize;

mod ack;
mod budgets;
mod influx;
mod limits;
mod object_store;
mod observability;
mod parquet;
mod security;
mod server;

pub use ack::AckConfig;
pub use budgets::{BudgetSettings, BudgetsConfig, NodeOverride};
pub use horizon_shared::config::{ConfigError, TlsSource};
pub use horizon_shared::store::{S3Options, StoreLocation};
pub use influx::{InfluxApi, InfluxConfig, InfluxSettings};
pub use limits::{DictionaryLimits, FrameBufferLimits, FrameRate, LimitsConfig, LimitsSettings};
pub use object_store::ObjectStoreConfig;
pub use observability::{ObservabilityConfig, ObservabilitySettings};
pub use parquet::{ParquetConfig, ParquetSettings};
pub use security::{CrlSettings, PathList, SecurityConfig, SecuritySettings};
pub use server::{ServerConfig, ServerSettings};

/// The whole relay configuration, as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// QUIC listener.
    pub server: ServerConfig,
    /// Certificates.
    pub security: SecurityConfig,
    /// InfluxDB sink.
    pub influxdb: InfluxConfig,
    /// Parquet micro-batches.
    pub parquet: ParquetConfig,
    /// Object store for the Parquet objects.
    pub object_store: ObjectStoreConfig,
    /// Input limits.
    pub limits: LimitsConfig,
    /// Per-node cardinality budgets.
    pub budgets: BudgetsConfig,
    /// What an ack promises.
    pub ack: AckConfig,
    /// Metrics endpoint and logs.
    pub observability: ObservabilityConfig,
}

/// A configuration that passed validation: typed, with every default
/// applied, each section's settings as its own validation produced them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `server`: the QUIC listener.
    pub server: ServerSettings,
    /// `security`: certificates and revocation lists.
    pub security: SecuritySettings,
    /// `limits`: input limits.
    pub limits: LimitsSettings,
    /// `budgets`: cardinality budgets.
    pub budgets: BudgetSettings,
    /// `observability`: metrics endpoint, readiness and logs.
    pub observability: ObservabilitySettings,
    /// `influxdb`: the InfluxDB sink, if configured.
    pub influxdb: Option<InfluxSettings>,
    /// `parquet` and `object_store`: Parquet micro-batches and their store.
    pub parquet: ParquetSettings,
    /// `ack`: ack only after the object store has the batch.
    pub durable_acks: bool,
}

impl Config {
    /// Reads, expands (with the process environment) and parses a YAML file
    /// (not yet validated).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        horizon_shared::config::load_file(path)
    }

    /// Expands (with the process environment) and parses YAML text; `origin`
    /// names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        horizon_shared::config::load_yaml(text, origin, horizon_shared::config::process_env)
    }

    /// Like [`Config::from_yaml`], with variables looked up by `env`.
    pub fn from_yaml_with_env(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        horizon_shared::config::load_yaml(text, origin, env)
    }

    /// Checks every section and produces typed [`Settings`].
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let server = self.server.validate()?;
        let security = self.security.validate()?;
        let influxdb = self.influxdb.validate()?;
        let parquet = self.parquet.validate(&self.object_store)?;
        let durable_acks = self.ack.validate()?;
        let limits = self.limits.validate()?;
        let budgets = self.budgets.validate(limits.max_cardinality)?;
        let observability = self.observability.validate()?;
        Ok(Settings {
            server,
            security,
            limits,
            budgets,
            observability,
            influxdb,
            parquet,
            durable_acks,
        })
    }
}

#[cfg(test)]
mod tests;
