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

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use horizon_shared::model::{SeriesLimits, TimeWindow};
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
pub use limits::{DictionaryLimits, FrameBufferLimits, LimitsConfig, LimitsSettings};
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

/// A configuration that passed validation: typed, with every default applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// QUIC listen address.
    pub listen_addr: SocketAddr,
    /// Authenticated connection cap.
    pub max_connections: usize,
    /// Handshakes in progress cap.
    pub max_handshakes_in_progress: usize,
    /// Initials per second above which unvalidated addresses get a Retry
    /// (0: always).
    pub handshake_retry_per_sec: u32,
    /// Time a handshake may take.
    pub handshake_timeout: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Drain: time for streams to finish after GoAway.
    pub drain_grace: Duration,
    /// Drain: time for the sinks to flush.
    pub drain_flush: Duration,
    /// Streams per connection.
    pub max_streams_per_connection: u32,
    /// Read and unacked batches per connection.
    pub max_in_flight_per_connection: usize,
    /// QUIC receive window of one connection, bytes.
    pub receive_window: u64,
    /// Server ID and connection ID length for QUIC-LB routing, if set.
    pub quic_lb: Option<(crate::quic_lb::ServerId, usize)>,
    /// This relay's name.
    pub relay_id: String,
    /// Certificates.
    pub tls: TlsSource,
    /// Certificate revocation lists.
    pub crl: CrlSettings,
    /// Points per batch.
    pub max_batch_size: usize,
    /// Frame size cap.
    pub max_frame_bytes: usize,
    /// Dictionary ids per stream.
    pub max_series_per_stream: u32,
    /// Series dictionary memory bounds.
    pub dictionary: DictionaryLimits,
    /// Bounds on the bytes of frames being read.
    pub frame_buffer: FrameBufferLimits,
    /// Time a frame's payload may take to arrive once it has buffer room.
    pub frame_read_timeout: Duration,
    /// Series validation limits.
    pub series_limits: SeriesLimits,
    /// Accepted timestamp window.
    pub time_window: TimeWindow,
    /// Cardinality budgets.
    pub budgets: BudgetSettings,
    /// Metrics endpoint address (`None`: disabled).
    pub metrics_addr: Option<SocketAddr>,
    /// Default log filter.
    pub log_level: String,
    /// JSON logs.
    pub log_json: bool,
    /// InfluxDB sink, if configured.
    pub influxdb: Option<InfluxSettings>,
    /// Parquet micro-batches and their object store.
    pub parquet: ParquetSettings,
    /// Ack only after the object store has the batch.
    pub durable_acks: bool,
    /// Batches queued for the Parquet sink before streams stop being read.
    pub backpressure_threshold: usize,
    /// Store failing this long makes `/readyz` fail (`None`: never).
    pub unready_after_store_failure: Option<Duration>,
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
            listen_addr: server.listen_addr,
            max_connections: server.max_connections,
            max_handshakes_in_progress: server.max_handshakes_in_progress,
            handshake_retry_per_sec: server.handshake_retry_per_sec,
            handshake_timeout: server.handshake_timeout,
            idle_timeout: server.idle_timeout,
            keep_alive: server.keep_alive,
            drain_grace: server.drain_grace,
            drain_flush: server.drain_flush,
            max_streams_per_connection: server.max_streams_per_connection,
            max_in_flight_per_connection: server.max_in_flight_per_connection,
            receive_window: server.receive_window,
            quic_lb: server.quic_lb,
            relay_id: server.relay_id,
            tls: security.tls,
            crl: security.crl,
            max_batch_size: limits.max_batch_size,
            max_frame_bytes: limits.max_frame_bytes,
            max_series_per_stream: limits.max_series_per_stream,
            dictionary: limits.dictionary,
            frame_buffer: limits.frame_buffer,
            frame_read_timeout: limits.frame_read_timeout,
            series_limits: limits.series_limits,
            time_window: limits.time_window,
            budgets,
            metrics_addr: observability.metrics_addr,
            log_level: observability.log_level,
            log_json: observability.log_json,
            influxdb,
            parquet,
            durable_acks,
            backpressure_threshold: limits.backpressure_threshold,
            unready_after_store_failure: observability.unready_after_store_failure,
        })
    }
}

#[cfg(test)]
mod tests;
