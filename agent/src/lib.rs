//! Horizon telemetry node agent (`telemetry-agent`): scrapes Prometheus /
//! OpenMetrics exporters and reads GPUs through NVML, appends every batch
//! to a durable on-disk spool, and streams the spool to the relay fleet
//! over QUIC with the node's certificate. See `docs/agent.md`.

pub mod config;
pub mod expo;
pub mod gpu;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod scrape;
pub mod spool;

pub use pipeline::Agent;
