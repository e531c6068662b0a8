//! Where accepted points go: Parquet micro-batches in an object store and,
//! if configured, InfluxDB.
//!
//! Streams hand accepted points to the [`Pipeline`] (`pipeline.rs`):
//! - the Parquet path goes through a bounded queue (`limits.backpressure_threshold`
//!   batches) to the node's micro-batcher (`batcher.rs`, `parquet.batchers` of
//!   them, sharded by node); cuts of their rows are flushed concurrently
//!   (`flush.rs`): encoded (`parquet.rs`) and stored, several PUTs in flight.
//!   A full queue makes [`Pipeline::submit`] wait, which stops the stream
//!   from reading, which lets QUIC flow control push back on the agent;
//! - the InfluxDB path never waits (see [`influx`], [`lineproto`]).
//!
//! In `durable` ack mode the stream acks a batch only once the [`Receipt`]
//! reports the Parquet object stored. [`SinkMetrics`] are the sinks'
//! metrics; [`StoreHealth`] tells readiness whether writes keep failing.

mod batcher;
mod error;
mod flush;
mod health;
pub mod influx;
pub mod lineproto;
mod metrics;
mod parquet;
mod pipeline;
mod submission;

pub use error::{SinkError, StartError};
pub use health::StoreHealth;
pub use metrics::SinkMetrics;
pub use pipeline::{Pipeline, Receipt};
