//! The Horizon telemetry relay: a QUIC + mutual-TLS endpoint that takes
//! metric batches from node agents, validates them, enforces per-node
//! cardinality budgets, acks every batch, and stores the accepted points.
//!
//! Modules in the order a batch goes through them:
//!
//! - [`server`]: binds the sockets, runs the accept loop, starts shutdown;
//!   `state`: what every connection and stream shares; [`RelayError`]: why
//!   the relay could not start.
//! - `connection`: one agent connection: identity, streams, frames, acks.
//! - [`ingest`]: pure batch processing (series dictionary, validation, admission).
//! - [`budget`]: per-node cardinality budgets.
//! - [`sink`]: the pipeline from accepted points to storage:
//!   `sink::pipeline` (hand-off and backpressure) → `sink::batcher`
//!   (micro-batches) → `sink::parquet` (encoding) / [`sink::influx`] (InfluxDB).
//!
//! Around them:
//!
//! - [`config`]: YAML configuration and its validation.
//! - [`quic_lb`]: connection IDs that carry a server ID, for load balancers
//!   that route QUIC by connection ID.
//! - [`shutdown`]: the relay's shutdown phases and deadlines, for the
//!   coordinator in `horizon_shared::shutdown`.
//! - [`metrics`]: Prometheus metrics; [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - `tls_reload`: loading and reloading certificates and CRLs (SIGHUP);
//!   `open`: the connections being served, by node, within
//!   `server.max_connections_per_node`; `revocation`: open connections,
//!   closed when a reloaded CRL revokes their node.
//! - [`retry`]: backoff shared by the sinks' writers; [`log_limit`]: rate-limited log lines.

pub mod budget;
pub mod config;
mod connection;
mod error;
mod handshake;
pub mod http;
pub mod ingest;
pub mod log_limit;
pub mod metrics;
mod open;
pub mod quic_lb;
pub mod retry;
mod revocation;
pub mod server;
pub mod shutdown;
pub mod sink;
mod state;
mod tls_reload;

pub use error::RelayError;
pub use server::Relay;
pub use tls_reload::{Reloaded, TlsReloader, load_tls};
