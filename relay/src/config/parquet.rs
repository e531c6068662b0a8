//! `parquet`: the micro-batchers, their flush bounds and the uploads.

use std::time::Duration;

use horizon_shared::config::ConfigError;
use horizon_shared::config::check::{at_most, one_of, positive};
use horizon_shared::store::StoreLocation;
use serde::Deserialize;

use super::object_store::ObjectStoreConfig;

/// Most micro-batchers (`parquet.batchers`).
const MAX_BATCHERS: usize = 256;
/// Most PUT requests in flight (`parquet.max_concurrent_puts`).
const MAX_CONCURRENT_PUTS: usize = 1024;
/// Most added PUT latency (`parquet.debug_put_latency_ms`).
const MAX_DEBUG_PUT_LATENCY_MS: u64 = 10_000;

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

impl ParquetConfig {
    /// Checks the section, with the `object_store` section it writes to.
    pub fn validate(&self, store: &ObjectStoreConfig) -> Result<ParquetSettings, ConfigError> {
        let zstd = one_of(
            "parquet.compression",
            &self.compression,
            &[("snappy", false), ("zstd", true)],
        )?;
        positive(
            "parquet.rotation_interval_secs",
            self.rotation_interval_secs,
        )?;
        positive("parquet.flush_rows", self.flush_rows)?;
        positive("parquet.flush_bytes", self.flush_bytes)?;
        positive("parquet.max_concurrent_puts", self.max_concurrent_puts)?;
        at_most(
            "parquet.max_concurrent_puts",
            self.max_concurrent_puts,
            MAX_CONCURRENT_PUTS,
        )?;
        at_most("parquet.batchers", self.batchers, MAX_BATCHERS)
            .map_err(|e| e.because("0: one per CPU core"))?;
        at_most(
            "parquet.debug_put_latency_ms",
            self.debug_put_latency_ms,
            MAX_DEBUG_PUT_LATENCY_MS,
        )
        .map_err(|e| e.because("a benchmark setting; 0 in production"))?;
        let batchers = match self.batchers {
            0 => std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .min(MAX_BATCHERS),
            n => n,
        };
        Ok(ParquetSettings {
            location: store.location(&self.output_dir)?,
            raw_prefix: store.raw_prefix(),
            max_age: Duration::from_secs(self.rotation_interval_secs),
            flush_rows: self.flush_rows,
            flush_bytes: self.flush_bytes,
            zstd,
            batchers,
            max_concurrent_puts: self.max_concurrent_puts,
            debug_put_latency: Duration::from_millis(self.debug_put_latency_ms),
        })
    }
}
