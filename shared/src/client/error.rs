//! The client's errors, and why a connection attempt failed
//! ([`ConnectFailure`], one word per reason for metrics).

use quinn::{ConnectError, ConnectionError, TransportErrorCode};

use crate::tls::is_tls_alert;

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
        /// Why, in words.
        reason: String,
        /// Why, as one of a few kinds.
        failure: ConnectFailure,
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

impl ClientError {
    /// Why a connection attempt that ended in this error failed.
    pub fn connect_failure(&self) -> ConnectFailure {
        match self {
            Self::Resolve(_) => ConnectFailure::Dns,
            Self::Connect { failure, .. } => *failure,
            Self::Closed => ConnectFailure::Closed,
            _ => ConnectFailure::Other,
        }
    }
}

/// Why a connection attempt failed: a small fixed set, for metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnectFailure {
    /// No handshake within `connect_timeout` (the relay is down or
    /// packets are lost), or the handshake went silent.
    Timeout,
    /// The relay refused the connection (QUIC `CONNECTION_REFUSED`, or an
    /// application close during the handshake: busy, shutting down).
    Refused,
    /// TLS failed: a certificate one side does not trust, or a TLS alert.
    Tls,
    /// The relay's name did not resolve.
    Dns,
    /// The address cannot be sent to from this socket (port 0, wrong
    /// address family).
    Unreachable,
    /// The relay reset the connection (a stateless reset: it lost the
    /// connection's state) or the endpoint is closing.
    Closed,
    /// Anything else (a QUIC protocol error, an unsupported version).
    Other,
}

impl ConnectFailure {
    /// Every reason, in the order of the enum.
    pub const ALL: [Self; 7] = [
        Self::Timeout,
        Self::Refused,
        Self::Tls,
        Self::Dns,
        Self::Unreachable,
        Self::Closed,
        Self::Other,
    ];

    /// The reason as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Tls => "tls",
            Self::Dns => "dns",
            Self::Unreachable => "unreachable",
            Self::Closed => "closed",
            Self::Other => "other",
        }
    }

    /// Why `Endpoint::connect` refused to start an attempt.
    pub fn of_connect(e: &ConnectError) -> Self {
        match e {
            ConnectError::InvalidRemoteAddress(_) => Self::Unreachable,
            ConnectError::InvalidServerName(_) => Self::Tls,
            ConnectError::EndpointStopping => Self::Closed,
            ConnectError::CidsExhausted
            | ConnectError::NoDefaultClientConfig
            | ConnectError::UnsupportedVersion => Self::Other,
        }
    }

    /// Why a handshake ended in `e`. A TLS failure on our side (the relay's
    /// certificate is not trusted) is a local transport error with a
    /// CRYPTO_ERROR code; one on the relay's side (our certificate refused)
    /// arrives as the relay's CONNECTION_CLOSE with such a code.
    pub fn of_handshake(e: &ConnectionError) -> Self {
        match e {
            ConnectionError::TransportError(t) if is_tls_alert(t.code) => Self::Tls,
            ConnectionError::ConnectionClosed(c) if is_tls_alert(c.error_code) => Self::Tls,
            ConnectionError::ConnectionClosed(c)
                if c.error_code == TransportErrorCode::CONNECTION_REFUSED =>
            {
                Self::Refused
            }
            ConnectionError::ApplicationClosed(_) => Self::Refused,
            ConnectionError::TimedOut => Self::Timeout,
            ConnectionError::Reset | ConnectionError::LocallyClosed => Self::Closed,
            ConnectionError::TransportError(_)
            | ConnectionError::ConnectionClosed(_)
            | ConnectionError::VersionMismatch
            | ConnectionError::CidsExhausted => Self::Other,
        }
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::{ApplicationClose, ConnectionClose, VarInt};

    fn closed(code: TransportErrorCode) -> ConnectionError {
        ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: code,
            frame_type: None,
            reason: bytes::Bytes::new(),
        })
    }

    #[test]
    fn handshake_errors_map_to_their_reason() {
        // 42: TLS alert bad_certificate; 48: unknown_ca.
        assert_eq!(
            ConnectFailure::of_handshake(&closed(TransportErrorCode::crypto(42))),
            ConnectFailure::Tls
        );
        assert_eq!(
            ConnectFailure::of_handshake(&closed(TransportErrorCode::CONNECTION_REFUSED)),
            ConnectFailure::Refused
        );
        assert_eq!(
            ConnectFailure::of_handshake(&closed(TransportErrorCode::PROTOCOL_VIOLATION)),
            ConnectFailure::Other
        );
        let app = ConnectionError::ApplicationClosed(ApplicationClose {
            error_code: VarInt::from_u32(7),
            reason: bytes::Bytes::new(),
        });
        assert_eq!(ConnectFailure::of_handshake(&app), ConnectFailure::Refused);
        assert_eq!(
            ConnectFailure::of_handshake(&ConnectionError::TimedOut),
            ConnectFailure::Timeout
        );
        assert_eq!(
            ConnectFailure::of_handshake(&ConnectionError::Reset),
            ConnectFailure::Closed
        );
        assert_eq!(
            ConnectFailure::of_connect(&ConnectError::InvalidRemoteAddress(
                "127.0.0.1:0".parse().unwrap()
            )),
            ConnectFailure::Unreachable
        );
        assert_eq!(
            ClientError::Resolve("nowhere.invalid:1".into()).connect_failure(),
            ConnectFailure::Dns
        );
    }

    #[test]
    fn reasons_have_distinct_labels() {
        let names: std::collections::BTreeSet<_> =
            ConnectFailure::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names.len(), ConnectFailure::ALL.len());
    }
}
