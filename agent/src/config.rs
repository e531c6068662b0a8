//! Agent configuration: YAML with `${VAR}` expansion, unknown keys refused,
//! a default for every key, and one validation step ([`Config::validate`])
//! whose errors name the key and the bad value — the relay's conventions.
//! `infra/agent.example.yaml` documents every key. Command-line flags
//! override the file (see `telemetry-agent --help`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::spool::{SpoolOptions, SyncPolicy};

pub use horizon_shared::config::ConfigError;
use horizon_shared::config::invalid;

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

/// `relay`: the relay (or load balancer) to stream to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// `host:port` of the relay or its load balancer.
    pub addr: String,
    /// Name the relay's certificate must carry; empty: the host part of `addr`.
    pub server_name: String,
    /// Batches sent and not yet acked, at most.
    pub window: usize,
    /// Points per batch, at most (the relay's `limits.max_batch_size`).
    pub max_batch_points: usize,
    /// Longest pause between connection attempts, seconds.
    pub max_backoff_secs: u64,
    /// The relay is taken for gone, and the agent reconnects through the
    /// balancer from a fresh UDP port, when nothing at all (not even the
    /// QUIC acknowledgement of a ping) has come from it for this long.
    pub liveness_timeout_secs: u64,
    /// A batch unacked this long while the relay still answers pings makes
    /// the agent reconnect (a relay alive but stuck); above the relay's
    /// flush age, which durable acks wait for.
    pub ack_timeout_secs: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:5001".into(),
            server_name: String::new(),
            window: 64,
            max_batch_points: 1000,
            max_backoff_secs: 30,
            liveness_timeout_secs: 3,
            ack_timeout_secs: 30,
        }
    }
}

/// `security`: the node certificate. The node's name is the one in its
/// certificate, as the relay reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Node certificate (PEM).
    pub tls_cert_path: String,
    /// Node private key (PEM).
    pub tls_key_path: String,
    /// CA of the relay's certificate (PEM).
    pub tls_ca_path: String,
    /// When the paths above are empty: a development PKI made by the relay
    /// (`ca.pem`, `ca-key.pem`); the agent issues itself a node certificate
    /// from that CA. Never use this in production.
    pub dev_certs_dir: String,
    /// Node name for a development certificate; empty: the host name.
    pub dev_node_name: String,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
            tls_ca_path: String::new(),
            dev_certs_dir: ".dev/certs".into(),
            dev_node_name: String::new(),
        }
    }
}

/// `spool`: the durable on-disk log every batch goes through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory of the segment files (created if missing).
    pub dir: String,
    /// Size cap in MiB; beyond it the oldest records are dropped (counted).
    pub max_mib: u64,
    /// A segment file is closed and a new one started at this size, MiB.
    pub segment_mib: u64,
    /// `every_batch` (fsync each append), `interval` or `never` (the OS decides).
    pub sync: String,
    /// With `sync: interval`: fsync at most this often, milliseconds.
    pub sync_interval_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: "data/spool".into(),
            max_mib: 1024,
            segment_mib: 8,
            sync: "interval".into(),
            sync_interval_ms: 1000,
        }
    }
}

/// `scrape`: Prometheus / OpenMetrics targets and their defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    /// Default scrape interval, seconds.
    pub interval_secs: f64,
    /// Default scrape timeout, seconds (at most the interval).
    pub timeout_secs: f64,
    /// The targets.
    pub targets: Vec<TargetConfig>,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            interval_secs: 10.0,
            timeout_secs: 5.0,
            targets: Vec::new(),
        }
    }
}

/// One scrape target.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// `http://host:port/path`.
    pub url: String,
    /// Name of the target in the agent's metrics and logs; default: the URL.
    pub name: String,
    /// Scrape interval, seconds; default `scrape.interval_secs`.
    pub interval_secs: Option<f64>,
    /// Scrape timeout, seconds; default `scrape.timeout_secs`.
    pub timeout_secs: Option<f64>,
    /// Labels added to every sample (an exporter's own label of the same key wins).
    pub labels: BTreeMap<String, String>,
    /// Keep only metric names matching one of these patterns (`*` matches
    /// any run of characters); empty: keep all.
    pub allow: Vec<String>,
    /// Drop metric names matching one of these patterns (wins over `allow`).
    pub deny: Vec<String>,
    /// Label keys removed from every sample.
    pub drop_labels: Vec<String>,
    /// Values at or above this, of metrics matching `placeholder_metrics`,
    /// are DCGM "blank" placeholders and dropped (counted); `0` disables the
    /// rule. Default 9.2e18.
    pub placeholder_min: Option<f64>,
    /// Metric-name patterns the placeholder rule applies to; default
    /// `["DCGM_*"]` (node_exporter legitimately reports 2^63−1 and 2^64 for
    /// "unlimited", e.g. `process_virtual_memory_max_bytes`).
    pub placeholder_metrics: Option<Vec<String>>,
}

/// `gpu`: NVML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    /// Read GPUs through NVML (libnvidia-ml, loaded at run time).
    pub enabled: bool,
    /// Sampling interval, seconds.
    pub interval_secs: f64,
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 1.0,
        }
    }
}

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

/// Where the node certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files.
    Files {
        /// Node certificate.
        cert: PathBuf,
        /// Node key.
        key: PathBuf,
        /// CA of the relay.
        ca: PathBuf,
    },
    /// Issue a certificate for `node` from the development CA in `dir`.
    Dev {
        /// The development PKI.
        dir: PathBuf,
        /// Node name.
        node: String,
    },
}

/// A validated scrape target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Name in metrics and logs.
    pub name: String,
    /// URL.
    pub url: String,
    /// Scrape interval.
    pub interval: Duration,
    /// Scrape timeout.
    pub timeout: Duration,
    /// Extra labels.
    pub labels: Vec<(String, String)>,
    /// Allow patterns.
    pub allow: Vec<String>,
    /// Deny patterns.
    pub deny: Vec<String>,
    /// Labels to drop.
    pub drop_labels: Vec<String>,
    /// Placeholder threshold (`None`: rule disabled).
    pub placeholder_min: Option<f64>,
    /// Metric names the placeholder rule applies to.
    pub placeholder_metrics: Vec<String>,
}

/// DCGM writes `DCGM_INT64_BLANK` (0x7ffffffffffffff0) and its neighbours
/// up to 2^63−1 for fields without a value; as doubles they are all about
/// 9.223e18. A value at or above this threshold, of a metric whose name
/// matches the target's `placeholder_metrics` (default `DCGM_*`), is taken
/// as a placeholder.
pub const DEFAULT_PLACEHOLDER_MIN: f64 = 9.2e18;

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

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn duration(key: &str, secs: f64) -> Result<Duration, ConfigError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(invalid(
            key,
            format!("{secs} is not a number of seconds in (0, 86400]"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Config {
    /// Reads, expands and parses a YAML file (not yet validated).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let (text, origin) = horizon_shared::config::read_file(path)?;
        Self::from_yaml(&text, &origin)
    }

    /// Expands (with the process environment) and parses YAML text; `origin`
    /// names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::from_yaml_with_env(text, origin, |name| std::env::var(name).ok())
    }

    /// Like [`Config::from_yaml`], with variables looked up by `env`.
    pub fn from_yaml_with_env(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        horizon_shared::config::parse_yaml(text, origin, env)
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

    /// Checks every value and produces typed [`Settings`].
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let r = &self.relay;
        let (host, port) = r
            .addr
            .rsplit_once(':')
            .ok_or_else(|| invalid("relay.addr", format!("{:?} is not HOST:PORT", r.addr)))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(invalid(
                "relay.addr",
                format!("{:?} is not HOST:PORT", r.addr),
            ));
        }
        let server_name = if r.server_name.is_empty() {
            let h = host.trim_start_matches('[').trim_end_matches(']');
            // The development relay certificate names localhost and 127.0.0.1.
            h.to_owned()
        } else {
            r.server_name.clone()
        };
        if r.window == 0 {
            return Err(invalid("relay.window", "must be at least 1"));
        }
        if r.max_batch_points == 0 {
            return Err(invalid("relay.max_batch_points", "must be at least 1"));
        }
        if r.max_backoff_secs == 0 {
            return Err(invalid("relay.max_backoff_secs", "must be at least 1"));
        }
        if !(1..=60).contains(&r.liveness_timeout_secs) {
            return Err(invalid(
                "relay.liveness_timeout_secs",
                format!("{} must be between 1 and 60", r.liveness_timeout_secs),
            ));
        }
        if r.ack_timeout_secs <= r.liveness_timeout_secs {
            return Err(invalid(
                "relay.ack_timeout_secs",
                format!(
                    "{} must be above relay.liveness_timeout_secs ({})",
                    r.ack_timeout_secs, r.liveness_timeout_secs
                ),
            ));
        }

        let s = &self.security;
        let files = [&s.tls_cert_path, &s.tls_key_path, &s.tls_ca_path];
        let tls = if files.iter().all(|f| f.is_empty()) {
            if s.dev_certs_dir.is_empty() {
                return Err(invalid(
                    "security.dev_certs_dir",
                    "empty, and no tls_cert_path/tls_key_path/tls_ca_path given",
                ));
            }
            TlsSource::Dev {
                dir: PathBuf::from(&s.dev_certs_dir),
                node: if s.dev_node_name.is_empty() {
                    host_name()
                } else {
                    s.dev_node_name.clone()
                },
            }
        } else {
            for (key, f) in [
                ("security.tls_cert_path", &s.tls_cert_path),
                ("security.tls_key_path", &s.tls_key_path),
                ("security.tls_ca_path", &s.tls_ca_path),
            ] {
                if f.is_empty() {
                    return Err(invalid(
                        key,
                        "empty while another security.tls_*_path is set (give all three)",
                    ));
                }
            }
            TlsSource::Files {
                cert: s.tls_cert_path.clone().into(),
                key: s.tls_key_path.clone().into(),
                ca: s.tls_ca_path.clone().into(),
            }
        };

        let sp = &self.spool;
        if sp.dir.is_empty() {
            return Err(invalid("spool.dir", "must not be empty"));
        }
        if sp.max_mib == 0 {
            return Err(invalid("spool.max_mib", "must be at least 1"));
        }
        if sp.segment_mib == 0 || sp.segment_mib > sp.max_mib {
            return Err(invalid(
                "spool.segment_mib",
                format!(
                    "{} must be between 1 and spool.max_mib ({})",
                    sp.segment_mib, sp.max_mib
                ),
            ));
        }
        let sync = match sp.sync.as_str() {
            "every_batch" => SyncPolicy::EveryBatch,
            "never" => SyncPolicy::Never,
            "interval" => {
                if sp.sync_interval_ms == 0 {
                    return Err(invalid("spool.sync_interval_ms", "must be at least 1"));
                }
                SyncPolicy::Interval(Duration::from_millis(sp.sync_interval_ms))
            }
            other => {
                return Err(invalid(
                    "spool.sync",
                    format!("{other:?} is not every_batch, interval or never"),
                ));
            }
        };

        let sc = &self.scrape;
        let interval = duration("scrape.interval_secs", sc.interval_secs)?;
        let timeout = duration("scrape.timeout_secs", sc.timeout_secs)?;
        let mut targets = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in sc.targets.iter().enumerate() {
            let key = |k: &str| format!("scrape.targets[{i}].{k}");
            if !(t.url.starts_with("http://") || t.url.starts_with("https://"))
                || reqwest::Url::parse(&t.url).is_err()
            {
                return Err(invalid(
                    key("url"),
                    format!("{:?} is not an http:// or https:// URL", t.url),
                ));
            }
            let interval = match t.interval_secs {
                Some(v) => duration(&key("interval_secs"), v)?,
                None => interval,
            };
            let timeout = match t.timeout_secs {
                Some(v) => duration(&key("timeout_secs"), v)?,
                None => timeout.min(interval),
            };
            if timeout > interval {
                return Err(invalid(
                    key("timeout_secs"),
                    format!(
                        "{} s exceeds the interval of {} s",
                        timeout.as_secs_f64(),
                        interval.as_secs_f64()
                    ),
                ));
            }
            for (k, v) in &t.labels {
                let ok_key = !k.is_empty()
                    && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                    && !horizon_shared::model::is_reserved_label_key(k);
                if !ok_key {
                    return Err(invalid(
                        format!("{}.{k}", key("labels")),
                        "label keys are [a-zA-Z0-9_], not node, time or _*",
                    ));
                }
                if v.is_empty() {
                    return Err(invalid(format!("{}.{k}", key("labels")), "empty value"));
                }
            }
            for (what, list) in [("allow", &t.allow), ("deny", &t.deny)] {
                if let Some(j) = list.iter().position(String::is_empty) {
                    return Err(invalid(format!("{}[{j}]", key(what)), "empty pattern"));
                }
            }
            let placeholder_min = match t.placeholder_min {
                None => Some(DEFAULT_PLACEHOLDER_MIN),
                Some(0.0) => None,
                Some(v) if v.is_finite() && v > 0.0 => Some(v),
                Some(v) => {
                    return Err(invalid(
                        key("placeholder_min"),
                        format!("{v} is not a positive number (0 disables)"),
                    ));
                }
            };
            let name = if t.name.is_empty() {
                t.url.clone()
            } else {
                t.name.clone()
            };
            if !names.insert(name.clone()) {
                return Err(invalid(
                    key("name"),
                    format!("{name:?} names two targets (give each a distinct name)"),
                ));
            }
            targets.push(Target {
                name,
                url: t.url.clone(),
                interval,
                timeout,
                labels: t.labels.clone().into_iter().collect(),
                allow: t.allow.clone(),
                deny: t.deny.clone(),
                drop_labels: t.drop_labels.clone(),
                placeholder_min,
                placeholder_metrics: t
                    .placeholder_metrics
                    .clone()
                    .unwrap_or_else(|| vec!["DCGM_*".to_owned()]),
            });
        }

        let g = &self.gpu;
        let gpu_interval = duration("gpu.interval_secs", g.interval_secs)?;

        let o = &self.observability;
        let metrics_addr = if o.metrics_addr.is_empty() {
            None
        } else {
            Some(o.metrics_addr.parse().map_err(|_| {
                invalid(
                    "observability.metrics_addr",
                    format!("{:?} is not an IP:port address", o.metrics_addr),
                )
            })?)
        };
        if !["error", "warn", "info", "debug", "trace"].contains(&o.log_level.as_str()) {
            return Err(invalid(
                "observability.log_level",
                format!("{:?} is not error, warn, info, debug or trace", o.log_level),
            ));
        }
        let log_json = match o.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "observability.log_format",
                    format!("{other:?} is not text or json"),
                ));
            }
        };

        Ok(Settings {
            relay_addr: r.addr.clone(),
            server_name,
            window: r.window,
            max_batch_points: r.max_batch_points,
            max_backoff: Duration::from_secs(r.max_backoff_secs),
            liveness_timeout: Duration::from_secs(r.liveness_timeout_secs),
            ack_timeout: Duration::from_secs(r.ack_timeout_secs),
            tls,
            spool_dir: PathBuf::from(&sp.dir),
            spool: SpoolOptions {
                max_bytes: sp.max_mib.saturating_mul(1 << 20),
                segment_bytes: sp.segment_mib.saturating_mul(1 << 20),
                sync,
            },
            targets,
            gpu_enabled: g.enabled,
            gpu_interval,
            metrics_addr,
            log_level: o.log_level.clone(),
            log_json,
        })
    }
}

#[cfg(test)]
mod tests;
