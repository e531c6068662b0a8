//! The Horizon telemetry relay: a QUIC + mutual-TLS endpoint that takes
//! metric batches from node agents, validates them, enforces per-node
//! cardinality budgets and acks every batch.
//!
//! - [`config`]: YAML configuration and its validation.
//! - [`budget`]: per-node cardinality budgets.
//! - [`ingest`]: pure batch processing (dictionary, validation, admission).
//! - [`server`]: the QUIC endpoint, connections and streams.
//! - [`metrics`]: Prometheus metrics and the HTTP endpoint.
//! - [`sink`]: Parquet micro-batches in an object store, and InfluxDB.

pub mod budget;
pub mod config;
mod connection;
mod handshake;
pub mod ingest;
pub mod loadgen;
pub mod metrics;
pub mod ratelimit;
pub mod server;
pub mod sink;

pub use server::{Relay, RelayError, TlsReloader, load_tls};
