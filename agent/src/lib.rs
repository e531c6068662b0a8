//! Horizon telemetry node agent (`telemetry-agent`): scrapes Prometheus /
//! OpenMetrics exporters and reads GPUs through NVML, appends every batch
//! to a durable on-disk spool, and streams the spool to the relay fleet
//! over QUIC with the node's certificate. See `docs/agent.md`.
//!
//! - [`pipeline`]: the running [`Agent`], its parts and their shutdown
//!   ([`shutdown`]: sources, then the sender, then the spool).
//! - Sources: [`scrape`] (exporters, parsed by [`expo`]) and [`gpu`] (NVML;
//!   [`gpu::poll`] is its task). They append to the spool through [`sink`].
//! - [`spool`]: the durable on-disk log of batches ([`record`]: their encoding).
//! - [`sender`]: streams the spool to the relay and records the acks.
//! - [`tls`]: the node certificate; [`config`]: the configuration;
//!   [`metrics`]: the agent's own metrics and their endpoint.

pub mod config;
pub mod expo;
pub mod gpu;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod scrape;
pub mod sender;
pub mod shutdown;
pub mod sink;
pub mod spool;
pub mod tls;

pub use pipeline::{Agent, StartError};
