//! Agent configuration: YAML with `${VAR}` expansion, unknown keys refused,
//! a default for every key, and one validation step ([`Config::validate`])
//! whose errors name the key and the bad value — the relay's conventions.
//! `infra/agent.example.yaml` documents every key. Command-line flags
//! override the file (see `telemetry-agent --help`). Each section is a file
//! of its own, holding its keys, their defaults and its validation; the
//! checks shared with the relay and the loader are in
//! `horizon_shared::config`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod gpu;
mod lowered;
mod observability;
mod relay;
mod scrape;
mod security;
mod spool;

pub use gpu::{GpuConfig, GpuSettings};
pub use horizon_shared::config::{ConfigError, TlsSource};
pub use lowered::Lowered;
pub use observability::{ObservabilityConfig, ObservabilitySettings};
pub use relay::{RelayConfig, RelaySettings};
pub use scrape::{DEFAULT_PLACEHOLDER_MIN, ScrapeConfig, Target, TargetConfig};
pub use security::{SecurityConfig, SecuritySettings};
pub use spool::{SpoolConfig, SpoolSettings};

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
    /// Settings the command-line flags lowered ([`Config::apply`]).
    #[serde(skip)]
    pub lowered: Vec<Lowered>,
}

/// Validated settings, each section's as its own validation produced them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `relay`: where to send and how.
    pub relay: RelaySettings,
    /// `security`: certificates.
    pub security: SecuritySettings,
    /// `spool`: the on-disk spool.
    pub spool: SpoolSettings,
    /// `scrape`: the targets.
    pub targets: Vec<Target>,
    /// `gpu`: NVML.
    pub gpu: GpuSettings,
    /// `observability`: metrics endpoint and logs.
    pub observability: ObservabilitySettings,
    /// Settings lowered to fit another (flags and keys), for the log.
    pub lowered: Vec<Lowered>,
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

    /// Applies command-line overrides; a flag that lowers another setting
    /// is noted in [`Config::lowered`].
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(r) = &o.relay {
            self.relay.addr = r.clone();
        }
        if let Some(d) = &o.spool_dir {
            self.spool.dir = d.display().to_string();
        }
        if let Some(i) = o.interval_secs {
            self.scrape.interval_secs = i;
            if self.scrape.timeout_secs > i {
                self.lowered.push(Lowered {
                    setting: "scrape.timeout_secs".into(),
                    from: lowered::secs(self.scrape.timeout_secs),
                    to: lowered::secs(i),
                    by: format!("--interval {i} (a scrape's timeout is at most its interval)"),
                });
                self.scrape.timeout_secs = i;
            }
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
        let mut lowered = self.lowered.clone();
        let relay = self.relay.validate()?;
        let security = self.security.validate()?;
        let spool = self.spool.validate()?;
        let targets = self.scrape.validate(&mut lowered)?;
        let gpu = self.gpu.validate()?;
        let observability = self.observability.validate()?;
        Ok(Settings {
            relay,
            security,
            spool,
            targets,
            gpu,
            observability,
            lowered,
        })
    }
}

#[cfg(test)]
mod tests;
