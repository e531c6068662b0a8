//! The client's errors.

/// Client-side errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The relay address could not be resolved or parsed.
    #[error("cannot resolve relay address {0}")]
    Resolve(String),
    /// The QUIC endpoint or TLS configuration could not be set up.
    #[error("client setup failed: {0}")]
    Setup(String),
    /// Connecting failed (handshake refused, timeout, unreachable).
    #[error("connect to {addr} failed: {reason}")]
    Connect {
        /// The relay address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The connection or stream broke; pending batches will be resent.
    #[error("connection lost: {0}")]
    Connection(String),
    /// The batch is larger than the configured limits.
    #[error("batch of {points} points exceeds the limit of {max}")]
    BatchTooLarge {
        /// Points in the batch.
        points: usize,
        /// The limit.
        max: usize,
    },
    /// The client was closed before the batch was acked.
    #[error("client closed before the batch was acked")]
    Closed,
}
