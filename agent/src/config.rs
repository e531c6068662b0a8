//! Agent configuration: YAML with `${VAR}` expansion, unknown keys refused,
//! a default for every key, and one validation step ([`Config::validate`])
//! whose errors name the key and the bad value — the relay's conventions.
//! `infra/agent.example.yaml` documents every key. Command-line flags
//! override the file (see `telemetry-agent --help`). Each section is a file
//! of its own, holding its keys, their defaults and its validation; the
//! checks shared with the relay and the loader are in
//! `horizon_shared::config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::spool::SpoolOptions;

mod gpu;
mod observability;
mod relay;
mod scrape;
mod security;
mod spool;

pub use gpu::GpuConfig;
pub use horizon_shared::config::{ConfigError, TlsSource};
pub use observability::{ObservabilityConfig, ObservabilitySettings};
pub use relay::{RelayConfig, RelaySettings};
pub use scrape::{DEFAULT_PLACEHOLDER_MIN, ScrapeConfig, Target, TargetConfig};
pub use security::{SecurityConfig, SecuritySettings};
pub use spool::SpoolConfig;

/// The whole agent configuration, as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where to send.
    pub relay: RelayConfig,
    /// Certificates.
    pub security: SecurityConfig,
    /// The on-disk spool.
    pub spool: SpoolConfig,
    /// Prometheus / OpenMetrics targets.
    pub scrape: ScrapeConfig,
    /// GPU metrics through NVML.
    pub gpu: GpuConfig,
    /// Metrics endpoint and logs.
    pub observability: ObservabilityConfig,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Relay address.
    pub relay_addr: String,
    /// Name on the relay's certificate.
    pub server_name: String,
    /// Client window.
    pub window: usize,
    /// Points per batch.
    pub max_batch_points: usize,
    /// Reconnect backoff cap.
    pub max_backoff: Duration,
    /// Silence after which the relay is taken for gone.
    pub liveness_timeout: Duration,
    /// Unacked time after which a relay that answers is taken for stuck.
    pub ack_timeout: Duration,
    /// Certificates.
    pub tls: TlsSource,
    /// Node name of a development certificate (with [`TlsSource::Dev`]):
    /// `security.dev_node_name`, else the host name.
    pub dev_node_name: String,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Spool options.
    pub spool: SpoolOptions,
    /// Targets.
    pub targets: Vec<Target>,
    /// NVML on or off.
    pub gpu_enabled: bool,
    /// NVML interval.
    pub gpu_interval: Duration,
    /// Metrics endpoint.
    pub metrics_addr: Option<SocketAddr>,
    /// Log level.
    pub log_level: String,
    /// JSON logs.
    pub log_json: bool,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--relay`.
    pub relay: Option<String>,
    /// `--scrape` (added to the file's targets).
    pub scrape: Vec<String>,
    /// `--spool-dir`.
    pub spool_dir: Option<PathBuf>,
    /// `--interval`.
    pub interval_secs: Option<f64>,
    /// `--certs`.
    pub certs: Option<PathBuf>,
    /// `--metrics-addr`.
    pub metrics_addr: Option<String>,
    /// `--node`.
    pub node: Option<String>,
    /// `--no-gpu`.
    pub no_gpu: bool,
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

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(r) = &o.relay {
            self.relay.addr = r.clone();
        }
        if let Some(d) = &o.spool_dir {
            self.spool.dir = d.display().to_string();
        }
        if let Some(i) = o.interval_secs {
            self.scrape.interval_secs = i;
            self.scrape.timeout_secs = self.scrape.timeout_secs.min(i);
        }
        if let Some(c) = &o.certs {
            self.security.dev_certs_dir = c.display().to_string();
            for (file, name) in [
                (&mut self.security.tls_cert_path, "node.pem"),
                (&mut self.security.tls_key_path, "node-key.pem"),
                (&mut self.security.tls_ca_path, "ca.pem"),
            ] {
                if file.is_empty() && c.join("node.pem").exists() {
                    *file = c.join(name).display().to_string();
                }
            }
        }
        if let Some(m) = &o.metrics_addr {
            self.observability.metrics_addr = m.clone();
        }
        if let Some(n) = &o.node {
            self.security.dev_node_name = n.clone();
        }
        if o.no_gpu {
            self.gpu.enabled = false;
        }
        for url in &o.scrape {
            self.scrape.targets.push(TargetConfig {
                url: url.clone(),
                ..TargetConfig::default()
            });
        }
    }

    /// Checks every section and produces typed [`Settings`].
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let relay = self.relay.validate()?;
        let security = self.security.validate()?;
        let (spool_dir, spool) = self.spool.validate()?;
        let targets = self.scrape.validate()?;
        let gpu_interval = self.gpu.validate()?;
        let observability = self.observability.validate()?;
        Ok(Settings {
            relay_addr: relay.addr,
            server_name: relay.server_name,
            window: relay.window,
            max_batch_points: relay.max_batch_points,
            max_backoff: relay.max_backoff,
            liveness_timeout: relay.liveness_timeout,
            ack_timeout: relay.ack_timeout,
            tls: security.tls,
            dev_node_name: security.dev_node_name,
            spool_dir,
            spool,
            targets,
            gpu_enabled: self.gpu.enabled,
            gpu_interval,
            metrics_addr: observability.metrics_addr,
            log_level: observability.log_level,
            log_json: observability.log_json,
        })
    }
}

#[cfg(test)]
mod tests;
