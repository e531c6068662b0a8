//! Shared pieces of the Horizon telemetry pipeline.
//!
//! - [`proto`]: the wire-protocol messages (generated from
//!   `proto/horizon/telemetry/v1/telemetry.proto`).
//! - [`codec`]: the length-prefixed frame codec, pure and I/O-free, plus a
//!   buffered frame reader for any async byte stream.
//! - [`model`]: series identity, canonical label order, validation rules.
//! - [`tls`]: certificate loading, rustls/quinn configs, node identity;
//!   [`crl`]: certificate revocation lists for the client verifier.
//! - [`devcerts`]: a development CA that issues server and node certificates.
//! - [`envsubst`]: `${VAR}` expansion for configuration files; [`config`]
//!   (feature `config`): loading them (YAML, one error type), the range,
//!   relation and host-name checks of their validation, and where
//!   certificates come from ([`config::TlsSource`]).
//! - [`layout`]: the object keys of raw micro-batches.
//! - [`raw`] (feature `raw`): the raw Parquet format in one place (the Arrow
//!   schema, also at `schema`; sort order, metadata, writer properties), its
//!   encoder and the reader's check.
//! - [`clock`]: wall-clock time as Unix timestamps; [`jitter`]: random
//!   spreads for retry pauses.
//! - [`store`] (feature `store`): object-store locations and clients.
//! - [`client`]: the agent client used by agents, the load generator and tests.
//! - [`shutdown`]: the shutdown coordinator (named components, ordered
//!   phases, deadlines); [`http`] (feature `http`): the `/metrics` and
//!   `/healthz` routes.

pub mod client;
pub mod clock;
pub mod codec;
#[cfg(feature = "config")]
pub mod config;
pub mod crl;
pub mod devcerts;
pub mod envsubst;
#[cfg(feature = "http")]
pub mod http;
pub mod jitter;
pub mod layout;
pub mod model;
pub mod proto;
#[cfg(feature = "raw")]
pub mod raw;
/// The Arrow schema of raw micro-batches (`raw/schema.rs`), at its old path.
#[cfg(feature = "raw")]
pub use raw::schema;
pub mod shutdown;
#[cfg(feature = "store")]
pub mod store;
pub mod tls;
pub mod udp;

/// The ALPN protocol id of wire protocol version 1.
pub const ALPN: &[u8] = b"horizon-telemetry/1";
