//! Where accepted points go: Parquet micro-batches in an object store and,
//! if configured, InfluxDB.
//!
//! Streams hand accepted points to the [`Pipeline`] (`pipeline.rs`):
//! - the Parquet path goes through a bounded queue (`limits.backpressure_threshold`
//!   batches) to the micro-batcher (`batcher.rs`), which encodes (`parquet.rs`)
//!   and stores them; a full queue makes [`Pipeline::submit`] wait, which
//!   stops the stream from reading, which lets QUIC flow control push back
//!   on the agent;
//! - the InfluxDB path never waits (see [`influx`], [`lineproto`]).
//!
//! In `durable` ack mode the stream acks a batch only once the [`Receipt`]
//! reports the Parquet object stored. [`SinkMetrics`] are the sinks'
//! metrics; [`StoreHealth`] tells readiness whether writes keep failing.

mod batcher;
mod health;
pub mod influx;
pub mod lineproto;
mod metrics;
mod parquet;
mod pipeline;

use std::sync::Arc;

use crate::ingest::SeriesEntry;

pub use health::StoreHealth;
pub use metrics::SinkMetrics;
pub(crate) use pipeline::Submission;
pub use pipeline::{Pipeline, Receipt, SinkError, StartError};

/// One accepted point on its way to Parquet.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) node: Arc<str>,
    pub(crate) series: Arc<SeriesEntry>,
    pub(crate) time: i64,
    pub(crate) value: f64,
    pub(crate) received_at: i64,
}

/// A point for [`encode_raw_objects`].
#[derive(Debug, Clone)]
pub struct RawPoint {
    /// Node identity.
    pub node: String,
    /// Metric name.
    pub metric: String,
    /// Labels, in canonical order (sorted by key).
    pub labels: Vec<horizon_shared::proto::Label>,
    /// Event time, Unix ns.
    pub time: i64,
    /// Value.
    pub value: f64,
    /// When a relay received the point, Unix ns.
    pub received_at: i64,
}

/// Encodes points exactly as the Parquet sink does (sorted, split by event
/// hour, one object per hour, same writer properties), for tools and tests
/// that need raw objects without running a relay. Returns each hour with
/// its row count and object bytes.
pub fn encode_raw_objects(
    points: &[RawPoint],
    relay: &str,
) -> Result<Vec<(horizon_shared::layout::Hour, usize, bytes::Bytes)>, String> {
    let rows = points
        .iter()
        .map(|p| Row {
            node: Arc::from(p.node.as_str()),
            series: Arc::new(SeriesEntry {
                metric: Arc::from(p.metric.as_str()),
                labels: p.labels.clone().into_boxed_slice(),
                series_hash: horizon_shared::model::series_hash(&p.metric, &p.labels),
                metric_hash: 0,
                invalid: None,
                text_bytes: 0,
            }),
            time: p.time,
            value: p.value,
            received_at: p.received_at,
        })
        .collect();
    parquet::encode_by_hour(rows, relay, false)
}
