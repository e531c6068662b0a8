//! Relay configuration: YAML with `${VAR}` expansion, unknown keys refused,
//! defaults for every key, and validation in one step
//! ([`Config::validate`]) whose errors name the key and the bad value.
//!
//! The sections and keys follow the collector this relay grew from
//! (`server`, `security`, `influxdb`, `parquet`, `limits`, `observability`),
//! extended with `budgets`, `object_store` and `ack`. `infra/config.example.yaml`
//! documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use horizon_shared::model::{SeriesLimits, TimeWindow};
pub use horizon_shared::store::{S3Options, StoreLocation};
use serde::Deserialize;

pub use horizon_shared::config::ConfigError;
use horizon_shared::config::invalid;

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

/// `server`: the QUIC listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// UDP address to listen on.
    pub listen_addr: String,
    /// Authenticated connections held at once (handshake and node identity
    /// passed); beyond this new connections are refused. Handshakes in
    /// progress do not count here.
    pub max_connections: usize,
    /// QUIC handshakes in progress at once. When full, an Initial from an
    /// address not yet validated gets a stateless Retry; one from a
    /// validated address takes the place of the oldest half-open handshake.
    pub max_handshakes_in_progress: usize,
    /// New handshakes per second (Initials received, over the last second)
    /// above which every Initial from an address not yet validated gets a
    /// stateless QUIC Retry, whatever the bound above; 0: always.
    pub handshake_retry_per_sec: u32,
    /// A handshake not finished within this many seconds is dropped (the
    /// idle timeout of established connections is separate).
    pub handshake_timeout_secs: u64,
    /// A connection with no packets from the peer for this long is closed.
    pub connection_timeout_secs: u64,
    /// Interval of QUIC keep-alive packets; must stay well under the 120 s a
    /// cloud UDP load balancer keeps an idle flow.
    pub keep_alive_secs: u64,
    /// Bidirectional streams one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// Batches one connection may have read and not yet acked, across its
    /// streams; beyond this its streams stop being read until acks go out.
    pub max_in_flight_batches_per_connection: usize,
    /// QUIC receive window of one connection, in bytes: data the agent may
    /// send ahead of what the relay has read. Bounds what the transport
    /// buffers per connection while its streams are not being read.
    pub receive_window_bytes: u64,
    /// Name of this relay in logs and object names; defaults to the host name.
    pub relay_id: String,
    /// On SIGTERM: how long agents get to finish the batches they are
    /// sending (after GoAway) before their streams are reset.
    pub drain_grace_secs: u64,
    /// On SIGTERM, after the streams: how long the sinks get to store what
    /// they hold. The relay exits within about the sum of the two plus 3 s.
    pub drain_flush_secs: u64,
    /// QUIC-LB server ID (`0x` and 16 hex digits, as AWS writes a target's
    /// `QuicServerId`): when set, every connection ID carries it, so a load
    /// balancer that routes by connection ID keeps each connection on this
    /// relay. Empty: random connection IDs.
    pub quic_lb_server_id: String,
    /// Length of the connection IDs issued with a server ID, 13 to 20 bytes.
    pub quic_lb_cid_len: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen_addr: "0.0.0.0:5001".into(),
            max_connections: 1000,
            max_handshakes_in_progress: 512,
            handshake_retry_per_sec: 100,
            handshake_timeout_secs: 5,
            connection_timeout_secs: 300,
            keep_alive_secs: 15,
            max_streams_per_connection: 16,
            max_in_flight_batches_per_connection: 1024,
            receive_window_bytes: 1 << 20,
            relay_id: String::new(),
            drain_grace_secs: 5,
            drain_flush_secs: 10,
            quic_lb_server_id: String::new(),
            quic_lb_cid_len: crate::quic_lb::DEFAULT_CID_LEN,
        }
    }
}

/// `security`: certificates. When the three paths are empty the relay uses
/// (and if needed creates) a development PKI in `dev_certs_dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Server certificate chain (PEM).
    pub tls_cert_path: String,
    /// Server private key (PEM).
    pub tls_key_path: String,
    /// CA that issues node (client) certificates (PEM).
    pub tls_ca_path: String,
    /// Where the development PKI lives when the paths above are empty.
    pub dev_certs_dir: String,
    /// Certificate revocation lists issued by the client CA (PEM or DER):
    /// one path or a list; empty: no revocation checks.
    pub tls_crl_path: PathList,
    /// Refuse every node certificate a CRL covers once the CRL is past its
    /// `nextUpdate` (fail closed); by default an expired CRL keeps applying
    /// as it stands.
    pub tls_crl_enforce_next_update: bool,
}

/// One path or a list of paths.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PathList {
    /// One path (empty: none).
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Default for PathList {
    fn default() -> Self {
        Self::One(String::new())
    }
}

impl PathList {
    /// The non-empty paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Self::One(p) => vec![p.clone()],
            Self::Many(v) => v.clone(),
        }
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
    }
}

/// Certificate revocation settings (`security.tls_crl_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlSettings {
    /// CRL files, reloaded on SIGHUP with the certificates.
    pub paths: Vec<PathBuf>,
    /// Whether a CRL past its `nextUpdate` refuses what it covers.
    pub enforce_next_update: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
            tls_ca_path: String::new(),
            dev_certs_dir: ".dev/certs".into(),
            tls_crl_path: PathList::default(),
            tls_crl_enforce_next_update: false,
        }
    }
}

/// `influxdb`: the real-time sink. Empty `url` disables it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {
    /// Base URL, e.g. `http://localhost:8086`. Empty: no InfluxDB sink.
    pub url: String,
    /// `v2` (`/api/v2/write`: InfluxDB 2.x/3.x and compatible stores) or `v1` (`/write`: InfluxDB 1.x).
    pub api: String,
    /// v2 organisation.
    pub org: String,
    /// v2 bucket.
    pub bucket: String,
    /// v2 API token; use `${INFLUXDB_TOKEN}`.
    pub token: String,
    /// v1 database.
    pub database: String,
    /// v1 retention policy; empty for the database's default.
    pub retention_policy: String,
    /// v1 user name; empty for none.
    pub username: String,
    /// v1 password; use `${INFLUXDB_PASSWORD}`.
    pub password: String,
    /// Points per write request, at most.
    pub batch_points: usize,
    /// Bytes of line protocol per write request (before gzip), at most.
    pub batch_bytes: usize,
    /// Write requests in flight at once.
    pub max_concurrent_writes: usize,
    /// Longest a point waits before it is written, milliseconds.
    pub flush_interval_ms: u64,
    /// Points held for InfluxDB (waiting or being retried); beyond this new
    /// points are dropped for InfluxDB only, counted and logged.
    pub max_buffered_points: usize,
    /// Timeout of one write request, seconds.
    pub timeout_secs: u64,
    /// gzip request bodies (level 1). Off saves the relay's CPU when the
    /// database is on the same host or network bandwidth is free.
    pub gzip: bool,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            api: "v2".into(),
            org: String::new(),
            bucket: String::new(),
            token: String::new(),
            database: String::new(),
            retention_policy: String::new(),
            username: String::new(),
            password: String::new(),
            batch_points: 5000,
            batch_bytes: 1 << 20,
            max_concurrent_writes: 4,
            flush_interval_ms: 1000,
            max_buffered_points: 1_000_000,
            timeout_secs: 10,
            gzip: true,
        }
    }
}

/// `parquet`: micro-batch files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetConfig {
    /// Local directory used when `object_store.url` is empty.
    pub output_dir: String,
    /// Oldest a micro-batch may get before it is flushed, in seconds. In
    /// `durable` ack mode this bounds the ack latency. The batchers flush by
    /// age together, into one flush (so one object per hour) as long as their
    /// rows fit in `flush_rows` and `flush_bytes`.
    pub rotation_interval_secs: u64,
    /// A batcher flushes once it holds this many rows.
    pub flush_rows: usize,
    /// ...or once its rows hold about this many bytes (node, metric, labels,
    /// 48 bytes of fixed fields per row).
    pub flush_bytes: usize,
    /// `snappy` or `zstd`.
    pub compression: String,
    /// Micro-batchers, each taking the points of its share of the nodes
    /// (a node always goes to the same one); 0 means one per CPU core.
    pub batchers: usize,
    /// Object-store PUT requests in flight at once. Flushes in flight (cut,
    /// encoding or uploading) are bounded by `batchers + max_concurrent_puts`.
    pub max_concurrent_puts: usize,
    /// For benchmarks only: milliseconds added to every object-store PUT
    /// (object_store's throttle wrapper), to measure the relay against a
    /// distant store. 0 (the default) adds nothing; never set it in production.
    pub debug_put_latency_ms: u64,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        Self {
            output_dir: "data/objects".into(),
            rotation_interval_secs: 1,
            flush_rows: 200_000,
            flush_bytes: 64 << 20,
            compression: "snappy".into(),
            batchers: 0,
            max_concurrent_puts: 4,
            debug_put_latency_ms: 0,
        }
    }
}

/// `object_store`: where Parquet objects go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreConfig {
    /// `s3://bucket/prefix` or `file:///path`; empty means `parquet.output_dir`.
    pub url: String,
    /// Key prefix for raw micro-batches (under the URL's own prefix).
    pub raw_prefix: String,
    /// The S3 keys, beside `url` in the same section: `region` (empty: from
    /// the environment, `AWS_REGION`, else us-east-1), `endpoint` (S3-compatible
    /// stores, e.g. `http://minio:9000`), `path_style` (`endpoint/bucket/key`,
    /// needed by most S3-compatible stores), `allow_http` (test and
    /// on-premises stores), `access_key_id` and `secret_access_key` (use
    /// `${VAR}`; empty: environment, web identity or instance role).
    #[serde(flatten)]
    pub s3: S3Options,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            raw_prefix: "raw".into(),
            s3: S3Options::default(),
        }
    }
}

/// `limits`: what one batch, series and point may be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Relay-wide cap on live series (all nodes together).
    pub max_cardinality: usize,
    /// Most points in one batch; larger batches are rejected as too large.
    pub max_batch_size: usize,
    /// Batches queued for the sinks beyond which streams stop being read.
    pub backpressure_threshold: usize,
    /// Largest frame, in bytes; a larger length prefix resets the stream.
    pub max_frame_bytes: usize,
    /// Series-dictionary ids one stream may use (ids are `0..this`).
    pub max_series_per_stream: u32,
    /// Memory one stream's series dictionary may hold, in bytes (labels,
    /// names and bookkeeping); definitions beyond it are refused.
    pub max_dictionary_bytes_per_stream: usize,
    /// Memory the series dictionaries of one connection's streams may hold
    /// together, in bytes.
    pub max_dictionary_bytes_per_connection: usize,
    /// Memory the series dictionaries of all connections may hold together,
    /// in bytes.
    pub max_dictionary_bytes_total: usize,
    /// Bytes of frames being read that one connection's streams may hold
    /// together; a stream whose next frame does not fit waits (QUIC flow
    /// control holds the agent). At least `max_frame_bytes`.
    pub max_frame_buffer_bytes_per_connection: usize,
    /// Bytes of frames being read that all connections may hold together.
    pub max_frame_buffer_bytes_total: usize,
    /// A frame whose payload has not all arrived this many seconds after it
    /// got room in the frame buffers resets its stream (`FRAME_TIMEOUT`), so
    /// a stalled sender cannot hold buffer room others need.
    pub frame_read_timeout_secs: u64,
    /// Most labels on one series.
    pub max_labels_per_series: usize,
    /// Longest metric name, bytes.
    pub max_metric_name_bytes: usize,
    /// Longest label key, bytes.
    pub max_label_key_bytes: usize,
    /// Longest label value, bytes.
    pub max_label_value_bytes: usize,
    /// Oldest accepted point, seconds before the relay's clock.
    pub max_point_age_secs: u64,
    /// Furthest accepted point, seconds after the relay's clock.
    pub max_future_skew_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let series = SeriesLimits::default();
        Self {
            max_cardinality: 100_000,
            max_batch_size: 1000,
            backpressure_threshold: 5000,
            max_frame_bytes: horizon_shared::codec::DEFAULT_MAX_FRAME_BYTES,
            max_series_per_stream: 65_536,
            max_dictionary_bytes_per_stream: 16 << 20,
            max_dictionary_bytes_per_connection: 32 << 20,
            max_dictionary_bytes_total: 2 << 30,
            max_frame_buffer_bytes_per_connection: 16 << 20,
            max_frame_buffer_bytes_total: 256 << 20,
            frame_read_timeout_secs: 15,
            max_labels_per_series: series.max_labels,
            max_metric_name_bytes: series.max_metric_len,
            max_label_key_bytes: series.max_label_key_len,
            max_label_value_bytes: series.max_label_value_len,
            max_point_age_secs: 7 * 24 * 3600,
            max_future_skew_secs: 600,
        }
    }
}

/// `budgets`: per-node cardinality budgets (see docs/budgets.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// Live series one node may have.
    pub max_series_per_node: usize,
    /// Live series one node may have for one metric; 0 means no per-metric cap.
    pub max_series_per_metric: usize,
    /// A series that has not reported for this long frees its slot.
    pub series_ttl_secs: u64,
    /// Nodes listed in the budget metrics (the top N by usage and by rejections).
    pub metrics_top_nodes: usize,
    /// Per-node exceptions, keyed by node identity.
    pub node_overrides: BTreeMap<String, NodeOverride>,
}

impl Default for BudgetsConfig {
    fn default() -> Self {
        Self {
            max_series_per_node: 10_000,
            max_series_per_metric: 0,
            series_ttl_secs: 600,
            metrics_top_nodes: 20,
            node_overrides: BTreeMap::new(),
        }
    }
}

/// A per-node exception to the budgets; unset fields keep the default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeOverride {
    /// Replaces `budgets.max_series_per_node` for this node.
    pub max_series: Option<usize>,
    /// Replaces `budgets.max_series_per_metric` for this node.
    pub max_series_per_metric: Option<usize>,
}

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

/// Where the relay's certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Operator-provided PEM files.
    Files {
        /// Server certificate chain.
        cert: PathBuf,
        /// Server key.
        key: PathBuf,
        /// Client CA.
        ca: PathBuf,
    },
    /// The development PKI in this directory (created when missing).
    Dev(PathBuf),
}

/// Budget settings after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSettings {
    /// Default series per node.
    pub max_series_per_node: usize,
    /// Default series per metric per node (`None`: no cap).
    pub max_series_per_metric: Option<usize>,
    /// Relay-wide cap.
    pub max_series_total: usize,
    /// Series expiry.
    pub series_ttl: Duration,
    /// Nodes shown in the budget metrics.
    pub metrics_top_nodes: usize,
    /// Per-node exceptions.
    pub overrides: BTreeMap<String, NodeOverride>,
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

/// Bounds on series dictionary memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictionaryLimits {
    /// One stream's dictionary.
    pub per_stream: usize,
    /// One connection's dictionaries together.
    pub per_connection: usize,
    /// Every dictionary of the relay together.
    pub total: usize,
}

/// Bounds on the bytes of frames being read (a frame's bytes are held from
/// its length prefix until its batch has been processed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameBufferLimits {
    /// One connection's streams together.
    pub per_connection: usize,
    /// Every connection together.
    pub total: usize,
}

/// Which InfluxDB write API to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfluxApi {
    /// `/api/v2/write` with org, bucket and token.
    V2 {
        /// Organisation.
        org: String,
        /// Bucket.
        bucket: String,
        /// Token (never logged).
        token: String,
    },
    /// `/write` with database, retention policy and optional basic auth.
    V1 {
        /// Database.
        database: String,
        /// Retention policy, if not the default.
        retention_policy: Option<String>,
        /// User and password.
        auth: Option<(String, String)>,
    },
}

/// InfluxDB sink settings after validation.
#[derive(Debug, Clone)]
pub struct InfluxSettings {
    /// Base URL without trailing slash.
    pub url: String,
    /// API flavour.
    pub api: InfluxApi,
    /// Points per request.
    pub batch_points: usize,
    /// Longest wait before a write.
    pub flush_interval: Duration,
    /// Bytes per request.
    pub batch_bytes: usize,
    /// Requests in flight.
    pub max_concurrent_writes: usize,
    /// Points buffered at most.
    pub max_buffered_points: usize,
    /// Request timeout.
    pub timeout: Duration,
    /// gzip request bodies.
    pub gzip: bool,
}

/// Parquet sink settings after validation.
#[derive(Debug, Clone)]
pub struct ParquetSettings {
    /// The store.
    pub location: StoreLocation,
    /// Prefix of raw objects inside the store.
    pub raw_prefix: String,
    /// Flush age.
    pub max_age: Duration,
    /// Flush size in rows.
    pub flush_rows: usize,
    /// Flush size in estimated bytes.
    pub flush_bytes: usize,
    /// zstd instead of snappy.
    pub zstd: bool,
    /// Micro-batchers (at least 1).
    pub batchers: usize,
    /// PUT requests in flight at most.
    pub max_concurrent_puts: usize,
    /// Added to every PUT (benchmarks only); zero in production.
    pub debug_put_latency: Duration,
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

    /// Checks every value and produces typed [`Settings`].
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let s = &self.server;
        let listen_addr: SocketAddr = s.listen_addr.parse().map_err(|_| {
            invalid(
                "server.listen_addr",
                format!("{:?} is not an IP:port address", s.listen_addr),
            )
        })?;
        positive("server.max_connections", s.max_connections)?;
        if !(1..=65_536).contains(&s.max_handshakes_in_progress) {
            return Err(invalid(
                "server.max_handshakes_in_progress",
                format!(
                    "{} must be between 1 and 65536",
                    s.max_handshakes_in_progress
                ),
            ));
        }
        if !(1..=60).contains(&s.handshake_timeout_secs) {
            return Err(invalid(
                "server.handshake_timeout_secs",
                format!("{} must be between 1 and 60", s.handshake_timeout_secs),
            ));
        }
        positive(
            "server.max_streams_per_connection",
            s.max_streams_per_connection as usize,
        )?;
        if !(1..=65_536).contains(&s.max_in_flight_batches_per_connection) {
            return Err(invalid(
                "server.max_in_flight_batches_per_connection",
                format!(
                    "{} must be between 1 and 65536 (each in-flight batch holds up to limits.max_batch_size points in memory)",
                    s.max_in_flight_batches_per_connection
                ),
            ));
        }
        if !(64 * 1024..=256 * 1024 * 1024).contains(&s.receive_window_bytes) {
            return Err(invalid(
                "server.receive_window_bytes",
                format!(
                    "{} must be between 65536 and 268435456",
                    s.receive_window_bytes
                ),
            ));
        }
        if s.keep_alive_secs == 0 || s.keep_alive_secs >= 120 {
            return Err(invalid(
                "server.keep_alive_secs",
                format!(
                    "{} must be between 1 and 119 (UDP load balancers forget idle flows after 120 s)",
                    s.keep_alive_secs
                ),
            ));
        }
        if s.connection_timeout_secs <= s.keep_alive_secs {
            return Err(invalid(
                "server.connection_timeout_secs",
                format!(
                    "{} must be greater than server.keep_alive_secs ({})",
                    s.connection_timeout_secs, s.keep_alive_secs
                ),
            ));
        }
        let quic_lb = if s.quic_lb_server_id.is_empty() {
            None
        } else {
            let id = crate::quic_lb::ServerId::parse(&s.quic_lb_server_id)
                .map_err(|e| invalid("server.quic_lb_server_id", e.to_string()))?;
            let range = crate::quic_lb::MIN_CID_LEN..=crate::quic_lb::MAX_CID_LEN;
            if !range.contains(&s.quic_lb_cid_len) {
                return Err(invalid(
                    "server.quic_lb_cid_len",
                    format!(
                        "{} must be between {} and {} (first octet, 8-byte server ID, a nonce of at least 4 bytes; QUIC allows 20)",
                        s.quic_lb_cid_len,
                        range.start(),
                        range.end()
                    ),
                ));
            }
            Some((id, s.quic_lb_cid_len))
        };
        let relay_id = if s.relay_id.is_empty() {
            default_relay_id()
        } else {
            s.relay_id.clone()
        };
        if !relay_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(
                "server.relay_id",
                format!("{relay_id:?} may only hold letters, digits, '-', '_' and '.'"),
            ));
        }

        let sec = &self.security;
        let set = [&sec.tls_cert_path, &sec.tls_key_path, &sec.tls_ca_path]
            .iter()
            .filter(|p| !p.is_empty())
            .count();
        let tls = match set {
            0 => {
                if sec.dev_certs_dir.is_empty() {
                    return Err(invalid(
                        "security.dev_certs_dir",
                        "must be set when no certificate paths are given",
                    ));
                }
                TlsSource::Dev(PathBuf::from(&sec.dev_certs_dir))
            }
            3 => TlsSource::Files {
                cert: PathBuf::from(&sec.tls_cert_path),
                key: PathBuf::from(&sec.tls_key_path),
                ca: PathBuf::from(&sec.tls_ca_path),
            },
            _ => {
                return Err(invalid(
                    "security",
                    "set all of tls_cert_path, tls_key_path and tls_ca_path, or none (development certificates)",
                ));
            }
        };

        let influxdb = self.influx_settings()?;
        let zstd = match self.parquet.compression.as_str() {
            "snappy" => false,
            "zstd" => true,
            other => {
                return Err(invalid(
                    "parquet.compression",
                    format!("{other:?} must be \"snappy\" or \"zstd\""),
                ));
            }
        };
        positive(
            "parquet.rotation_interval_secs",
            self.parquet.rotation_interval_secs as usize,
        )?;
        positive("parquet.flush_rows", self.parquet.flush_rows)?;
        positive("parquet.flush_bytes", self.parquet.flush_bytes)?;
        positive(
            "parquet.max_concurrent_puts",
            self.parquet.max_concurrent_puts,
        )?;
        if self.parquet.max_concurrent_puts > MAX_CONCURRENT_PUTS {
            return Err(invalid(
                "parquet.max_concurrent_puts",
                format!(
                    "{} must be at most {MAX_CONCURRENT_PUTS}",
                    self.parquet.max_concurrent_puts
                ),
            ));
        }
        if self.parquet.batchers > MAX_BATCHERS {
            return Err(invalid(
                "parquet.batchers",
                format!(
                    "{} must be at most {MAX_BATCHERS} (0: one per CPU core)",
                    self.parquet.batchers
                ),
            ));
        }
        if self.parquet.debug_put_latency_ms > 10_000 {
            return Err(invalid(
                "parquet.debug_put_latency_ms",
                format!(
                    "{} must be at most 10000 (a benchmark setting; 0 in production)",
                    self.parquet.debug_put_latency_ms
                ),
            ));
        }
        let batchers = match self.parquet.batchers {
            0 => std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .min(MAX_BATCHERS),
            n => n,
        };
        let location = self.store_location()?;
        let durable_acks = match self.ack.mode.as_str() {
            "durable" => true,
            "received" => false,
            other => {
                return Err(invalid(
                    "ack.mode",
                    format!("{other:?} must be \"durable\" or \"received\""),
                ));
            }
        };
        let l = &self.limits;
        positive("limits.max_cardinality", l.max_cardinality)?;
        positive("limits.max_batch_size", l.max_batch_size)?;
        positive("limits.backpressure_threshold", l.backpressure_threshold)?;
        if l.max_frame_bytes < 1024 || l.max_frame_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "limits.max_frame_bytes",
                format!("{} must be between 1024 and 67108864", l.max_frame_bytes),
            ));
        }
        positive(
            "limits.max_series_per_stream",
            l.max_series_per_stream as usize,
        )?;
        positive(
            "limits.max_dictionary_bytes_per_stream",
            l.max_dictionary_bytes_per_stream,
        )?;
        if l.max_dictionary_bytes_per_connection < l.max_dictionary_bytes_per_stream {
            return Err(invalid(
                "limits.max_dictionary_bytes_per_connection",
                format!(
                    "{} must be at least limits.max_dictionary_bytes_per_stream ({})",
                    l.max_dictionary_bytes_per_connection, l.max_dictionary_bytes_per_stream
                ),
            ));
        }
        if l.max_dictionary_bytes_total < l.max_dictionary_bytes_per_connection {
            return Err(invalid(
                "limits.max_dictionary_bytes_total",
                format!(
                    "{} must be at least limits.max_dictionary_bytes_per_connection ({})",
                    l.max_dictionary_bytes_total, l.max_dictionary_bytes_per_connection
                ),
            ));
        }
        if l.max_frame_buffer_bytes_per_connection < l.max_frame_bytes {
            return Err(invalid(
                "limits.max_frame_buffer_bytes_per_connection",
                format!(
                    "{} must be at least limits.max_frame_bytes ({}), or no frame of the largest size could be read",
                    l.max_frame_buffer_bytes_per_connection, l.max_frame_bytes
                ),
            ));
        }
        if l.max_frame_buffer_bytes_total < l.max_frame_buffer_bytes_per_connection {
            return Err(invalid(
                "limits.max_frame_buffer_bytes_total",
                format!(
                    "{} must be at least limits.max_frame_buffer_bytes_per_connection ({})",
                    l.max_frame_buffer_bytes_total, l.max_frame_buffer_bytes_per_connection
                ),
            ));
        }
        if u32::try_from(l.max_frame_buffer_bytes_total).is_err() {
            return Err(invalid(
                "limits.max_frame_buffer_bytes_total",
                format!("{} must be under 4 GiB", l.max_frame_buffer_bytes_total),
            ));
        }
        if !(1..=300).contains(&l.frame_read_timeout_secs) {
            return Err(invalid(
                "limits.frame_read_timeout_secs",
                format!("{} must be between 1 and 300", l.frame_read_timeout_secs),
            ));
        }
        positive("limits.max_metric_name_bytes", l.max_metric_name_bytes)?;
        positive("limits.max_label_key_bytes", l.max_label_key_bytes)?;
        positive("limits.max_label_value_bytes", l.max_label_value_bytes)?;
        positive("limits.max_point_age_secs", l.max_point_age_secs as usize)?;

        let b = &self.budgets;
        positive("budgets.max_series_per_node", b.max_series_per_node)?;
        positive("budgets.series_ttl_secs", b.series_ttl_secs as usize)?;
        for (node, o) in &b.node_overrides {
            if o.max_series == Some(0) {
                return Err(invalid(
                    format!("budgets.node_overrides.{node}.max_series"),
                    "must be at least 1",
                ));
            }
        }

        let o = &self.observability;
        let metrics_addr = if o.metrics_port == 0 {
            None
        } else {
            let ip: std::net::IpAddr = o.metrics_bind.parse().map_err(|_| {
                invalid(
                    "observability.metrics_bind",
                    format!("{:?} is not an IP address", o.metrics_bind),
                )
            })?;
            Some(SocketAddr::new(ip, o.metrics_port))
        };
        match o.log_level.to_ascii_lowercase().as_str() {
            "error" | "warn" | "info" | "debug" | "trace" => {}
            other => {
                return Err(invalid(
                    "observability.log_level",
                    format!("{other:?} must be error, warn, info, debug or trace"),
                ));
            }
        }
        let log_json = match o.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "observability.log_format",
                    format!("{other:?} must be \"text\" or \"json\""),
                ));
            }
        };

        Ok(Settings {
            listen_addr,
            max_connections: s.max_connections,
            max_handshakes_in_progress: s.max_handshakes_in_progress,
            handshake_retry_per_sec: s.handshake_retry_per_sec,
            handshake_timeout: Duration::from_secs(s.handshake_timeout_secs),
            idle_timeout: Duration::from_secs(s.connection_timeout_secs),
            keep_alive: Duration::from_secs(s.keep_alive_secs),
            drain_grace: Duration::from_secs(s.drain_grace_secs),
            drain_flush: Duration::from_secs(s.drain_flush_secs),
            max_streams_per_connection: s.max_streams_per_connection,
            max_in_flight_per_connection: s.max_in_flight_batches_per_connection,
            receive_window: s.receive_window_bytes,
            quic_lb,
            relay_id,
            tls,
            crl: CrlSettings {
                paths: sec.tls_crl_path.paths(),
                enforce_next_update: sec.tls_crl_enforce_next_update,
            },
            max_batch_size: l.max_batch_size,
            max_frame_bytes: l.max_frame_bytes,
            max_series_per_stream: l.max_series_per_stream,
            dictionary: DictionaryLimits {
                per_stream: l.max_dictionary_bytes_per_stream,
                per_connection: l.max_dictionary_bytes_per_connection,
                total: l.max_dictionary_bytes_total,
            },
            frame_buffer: FrameBufferLimits {
                per_connection: l.max_frame_buffer_bytes_per_connection,
                total: l.max_frame_buffer_bytes_total,
            },
            frame_read_timeout: Duration::from_secs(l.frame_read_timeout_secs),
            series_limits: SeriesLimits {
                max_metric_len: l.max_metric_name_bytes,
                max_labels: l.max_labels_per_series,
                max_label_key_len: l.max_label_key_bytes,
                max_label_value_len: l.max_label_value_bytes,
            },
            time_window: TimeWindow {
                max_age_ns: secs_to_ns(l.max_point_age_secs),
                max_future_ns: secs_to_ns(l.max_future_skew_secs),
            },
            budgets: BudgetSettings {
                max_series_per_node: b.max_series_per_node,
                max_series_per_metric: (b.max_series_per_metric > 0)
                    .then_some(b.max_series_per_metric),
                max_series_total: l.max_cardinality,
                series_ttl: Duration::from_secs(b.series_ttl_secs),
                metrics_top_nodes: b.metrics_top_nodes,
                overrides: b.node_overrides.clone(),
            },
            metrics_addr,
            log_level: o.log_level.to_ascii_lowercase(),
            log_json,
            influxdb,
            parquet: ParquetSettings {
                location,
                raw_prefix: self.object_store.raw_prefix.trim_matches('/').to_owned(),
                max_age: Duration::from_secs(self.parquet.rotation_interval_secs),
                flush_rows: self.parquet.flush_rows,
                flush_bytes: self.parquet.flush_bytes,
                zstd,
                batchers,
                max_concurrent_puts: self.parquet.max_concurrent_puts,
                debug_put_latency: Duration::from_millis(self.parquet.debug_put_latency_ms),
            },
            durable_acks,
            backpressure_threshold: l.backpressure_threshold,
            unready_after_store_failure: (o.unready_after_store_failure_secs > 0)
                .then(|| Duration::from_secs(o.unready_after_store_failure_secs)),
        })
    }

    fn influx_settings(&self) -> Result<Option<InfluxSettings>, ConfigError> {
        let i = &self.influxdb;
        if i.url.is_empty() {
            return Ok(None);
        }
        if !i.url.starts_with("http://") && !i.url.starts_with("https://") {
            return Err(invalid(
                "influxdb.url",
                format!("{:?} must start with http:// or https://", i.url),
            ));
        }
        let need = |key: &str, v: &str| {
            if v.is_empty() {
                Err(invalid(key, "must be set when influxdb.url is set"))
            } else {
                Ok(v.to_owned())
            }
        };
        let api = match i.api.as_str() {
            "v2" => InfluxApi::V2 {
                org: need("influxdb.org", &i.org)?,
                bucket: need("influxdb.bucket", &i.bucket)?,
                token: i.token.clone(),
            },
            "v1" => InfluxApi::V1 {
                database: need("influxdb.database", &i.database)?,
                retention_policy: (!i.retention_policy.is_empty())
                    .then(|| i.retention_policy.clone()),
                auth: (!i.username.is_empty()).then(|| (i.username.clone(), i.password.clone())),
            },
            other => {
                return Err(invalid(
                    "influxdb.api",
                    format!("{other:?} must be \"v2\" or \"v1\""),
                ));
            }
        };
        positive("influxdb.batch_points", i.batch_points)?;
        if i.batch_bytes < 4096 {
            return Err(invalid(
                "influxdb.batch_bytes",
                format!("{} must be at least 4096", i.batch_bytes),
            ));
        }
        if !(1..=64).contains(&i.max_concurrent_writes) {
            return Err(invalid(
                "influxdb.max_concurrent_writes",
                format!("{} must be between 1 and 64", i.max_concurrent_writes),
            ));
        }
        positive("influxdb.flush_interval_ms", i.flush_interval_ms as usize)?;
        positive("influxdb.timeout_secs", i.timeout_secs as usize)?;
        if i.max_buffered_points < i.batch_points {
            return Err(invalid(
                "influxdb.max_buffered_points",
                format!(
                    "{} must be at least influxdb.batch_points ({})",
                    i.max_buffered_points, i.batch_points
                ),
            ));
        }
        Ok(Some(InfluxSettings {
            url: i.url.trim_end_matches('/').to_owned(),
            api,
            batch_points: i.batch_points,
            batch_bytes: i.batch_bytes,
            max_concurrent_writes: i.max_concurrent_writes,
            flush_interval: Duration::from_millis(i.flush_interval_ms),
            max_buffered_points: i.max_buffered_points,
            timeout: Duration::from_secs(i.timeout_secs),
            gzip: i.gzip,
        }))
    }

    fn store_location(&self) -> Result<StoreLocation, ConfigError> {
        let o = &self.object_store;
        if o.url.is_empty() {
            if self.parquet.output_dir.is_empty() {
                return Err(invalid(
                    "parquet.output_dir",
                    "must be set when object_store.url is empty",
                ));
            }
            return Ok(StoreLocation::Local(PathBuf::from(
                &self.parquet.output_dir,
            )));
        }
        StoreLocation::parse(&o.url, &o.s3)
            .map_err(|e| invalid(format!("object_store.{}", e.setting), e.message))
    }
}

/// Most micro-batchers (`parquet.batchers`).
const MAX_BATCHERS: usize = 256;
/// Most PUT requests in flight (`parquet.max_concurrent_puts`).
const MAX_CONCURRENT_PUTS: usize = 1024;

fn positive(key: &str, v: usize) -> Result<(), ConfigError> {
    if v == 0 {
        Err(invalid(key, "must be at least 1 (got 0)"))
    } else {
        Ok(())
    }
}

fn secs_to_ns(s: u64) -> i64 {
    i64::try_from(s)
        .unwrap_or(i64::MAX / 1_000_000_000)
        .saturating_mul(1_000_000_000)
}

fn default_relay_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    if host.is_empty() {
        "relay".into()
    } else {
        host
    }
}

#[cfg(test)]
mod tests;
