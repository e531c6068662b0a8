//! The agent client: connects to a relay with a node certificate, pipelines
//! a window of unacked batches on one stream, and after any connection loss
//! reconnects and resends every batch not yet acked (at-least-once).
//!
//! ```no_run
//! # async fn demo(tls: horizon_shared::tls::TlsMaterial) -> Result<(), Box<dyn std::error::Error>> {
//! use horizon_shared::client::{Batch, Client, ClientConfig, Point};
//! let client = Client::connect(ClientConfig::new("relay.example:5001", "relay.example", tls)).await?;
//! let util = client.series("gpu_utilization_percent", &[("gpu", "0")])?;
//! let pending = client.send(Batch { points: vec![Point::now(util, 97.0)] }).await?;
//! let acked = pending.await?;
//! println!("{} accepted, {} rejected", acked.ack.accepted, acked.ack.rejected);
//! # Ok(()) }
//! ```
//!
//! Files, from what a user holds to what goes on the wire:
//!
//! - `series.rs`: the series registry ([`SeriesRegistry`]); a series'
//!   number is its id on the wire.
//! - `batch.rs`: [`Point`]s, [`Batch`]es and the ack of one ([`Acked`]).
//! - `config.rs`: [`ClientConfig`] and its defaults; the [`EventHook`]
//!   told of connections made and lost and of failed attempts.
//! - `backoff.rs`: the pause before a reconnect ([`reconnect_pause`]).
//! - `handle.rs`: [`Client`]: connects, queues batches in the window,
//!   returns each one's [`PendingAck`].
//! - `state.rs`: what the client and its driver share (the batches in
//!   flight, wake-ups, counters).
//! - `driver.rs`: the background task: one connection and stream at a
//!   time, writes batches, reads acks, reconnects and resends.
//! - `encoder.rs`: a stream's frames ([`StreamEncoder`]).
//! - `error.rs`: [`ClientError`], and [`ConnectFailure`]: why an attempt
//!   failed, as a metric label.

mod backoff;
mod batch;
mod config;
mod driver;
mod encoder;
mod error;
mod handle;
mod liveness;
mod series;
mod state;

pub use backoff::{FIRST_PAUSE, pause_at, pause_ceiling, reconnect_pause};
pub use batch::{Acked, Batch, Point};
pub use config::{ClientConfig, ConnectionEvent, EventHook};
pub use driver::{open_endpoint, open_endpoint_with};
pub use encoder::{StreamEncoder, absolute_times};
pub use error::{ClientError, ConnectFailure};
pub use handle::{Client, ClientStats, PendingAck};
pub use series::{SeriesId, SeriesRegistry, SeriesSpec};
