//! The sinks' errors: a batch that could not be stored, sinks that could
//! not be started.

use super::influx::InfluxError;

/// Why a batch could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The object store write failed for good (only while closing).
    #[error("object store write failed: {0}")]
    Store(String),
    /// The relay stopped before the batch was stored.
    #[error("relay stopped before the batch was stored")]
    Stopped,
}

/// Why the sinks could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The InfluxDB writer could not be set up.
    #[error(transparent)]
    Influx(#[from] InfluxError),
}
