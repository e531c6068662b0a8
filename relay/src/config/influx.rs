//! `influxdb`: the real-time sink, v2 or v1 write API.

use std::time::Duration;

use horizon_shared::config::ConfigError;
use horizon_shared::config::check::{
    at_least, between, http_url, not_below, one_of, positive, required,
};
use serde::Deserialize;

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

/// The two write APIs (`influxdb.api`).
#[derive(Debug, Clone, Copy)]
enum Api {
    V2,
    V1,
}

impl InfluxConfig {
    /// Checks the section; `None` when `url` is empty (no InfluxDB sink).
    pub fn validate(&self) -> Result<Option<InfluxSettings>, ConfigError> {
        if self.url.is_empty() {
            return Ok(None);
        }
        http_url("influxdb.url", &self.url)?;
        let need =
            |key: &str, v: &str| required(key, v, "when influxdb.url is set").map(str::to_owned);
        let api = match one_of(
            "influxdb.api",
            &self.api,
            &[("v2", Api::V2), ("v1", Api::V1)],
        )? {
            Api::V2 => InfluxApi::V2 {
                org: need("influxdb.org", &self.org)?,
                bucket: need("influxdb.bucket", &self.bucket)?,
                token: self.token.clone(),
            },
            Api::V1 => InfluxApi::V1 {
                database: need("influxdb.database", &self.database)?,
                retention_policy: (!self.retention_policy.is_empty())
                    .then(|| self.retention_policy.clone()),
                auth: (!self.username.is_empty())
                    .then(|| (self.username.clone(), self.password.clone())),
            },
        };
        positive("influxdb.batch_points", self.batch_points)?;
        at_least("influxdb.batch_bytes", self.batch_bytes, 4096)?;
        between(
            "influxdb.max_concurrent_writes",
            self.max_concurrent_writes,
            1,
            64,
        )?;
        positive("influxdb.flush_interval_ms", self.flush_interval_ms)?;
        positive("influxdb.timeout_secs", self.timeout_secs)?;
        not_below(
            "influxdb.max_buffered_points",
            self.max_buffered_points,
            "influxdb.batch_points",
            self.batch_points,
        )?;
        Ok(Some(InfluxSettings {
            url: self.url.trim_end_matches('/').to_owned(),
            api,
            batch_points: self.batch_points,
            batch_bytes: self.batch_bytes,
            max_concurrent_writes: self.max_concurrent_writes,
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            max_buffered_points: self.max_buffered_points,
            timeout: Duration::from_secs(self.timeout_secs),
            gzip: self.gzip,
        }))
    }
}
