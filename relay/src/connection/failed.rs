//! Why a handshake failed, told apart for the metrics and the log: a
//! client that gave up is not a certificate problem, and a client that
//! refused the relay's certificate is not the client's certificate.

use horizon_shared::tls::is_tls_alert;
use quinn::{ConnectionError, TransportErrorCode};

/// TLS alert certificate_revoked (RFC 8446 §6.2).
const CERTIFICATE_REVOKED_ALERT: u8 = 44;

/// How a handshake that did not finish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failed {
    /// The client closed it before it finished, or went quiet: it gave up,
    /// most often at its connect timeout while the relay worked through a
    /// connect storm. Nobody's TLS is at fault.
    Abandoned,
    /// The client ended it with a TLS alert: it refused the relay's
    /// certificate (or the relay's TLS settings).
    RefusedByClient,
    /// The relay refused the client's certificate: it is revoked.
    Revoked,
    /// The relay's own check failed: the client's certificate is missing,
    /// from an unknown CA or expired, or the client broke the protocol.
    Refused,
}

impl Failed {
    pub(super) fn of(e: &ConnectionError) -> Self {
        match e {
            ConnectionError::TransportError(t)
                if t.code == TransportErrorCode::crypto(CERTIFICATE_REVOKED_ALERT) =>
            {
                Self::Revoked
            }
            ConnectionError::ApplicationClosed(_)
            | ConnectionError::TimedOut
            | ConnectionError::Reset => Self::Abandoned,
            ConnectionError::ConnectionClosed(c) => {
                // A client that closes during the handshake sends
                // APPLICATION_ERROR in place of its own code (RFC 9000
                // §10.2.3); TLS alerts are 0x100 + the alert (RFC 9001 §4.8).
                if is_tls_alert(c.error_code) {
                    Self::RefusedByClient
                } else {
                    Self::Abandoned
                }
            }
            _ => Self::Refused,
        }
    }

    /// The `reason` of `connections_refused_total`, or `None` for a
    /// handshake the client abandoned (`handshakes_abandoned_total`).
    pub(super) fn refusal_reason(self) -> Option<&'static str> {
        match self {
            Self::Abandoned => None,
            Self::Revoked => Some("revoked"),
            Self::RefusedByClient | Self::Refused => Some("handshake"),
        }
    }

    /// What the log says it likely means.
    pub(super) fn hint(self) -> &'static str {
        match self {
            Self::Abandoned => {
                "the client gave up on the handshake (its connect timeout, during a connect storm?)"
            }
            Self::RefusedByClient => {
                "the client refused the relay's certificate (does the agent trust the CA that issued it, and does its server name match?)"
            }
            Self::Revoked => "the client's certificate is revoked",
            Self::Refused => {
                "handshake failed (client certificate missing, from an unknown CA or expired?)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use quinn::{ApplicationClose, ConnectionClose, VarInt};
    use quinn_proto::TransportError;

    use super::*;

    fn closed_by_client(code: TransportErrorCode) -> ConnectionError {
        ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: code,
            frame_type: None,
            reason: Bytes::new(),
        })
    }

    #[test]
    fn a_client_that_closes_or_goes_quiet_abandoned_the_handshake() {
        for e in [
            closed_by_client(TransportErrorCode::APPLICATION_ERROR),
            closed_by_client(TransportErrorCode::NO_ERROR),
            ConnectionError::ApplicationClosed(ApplicationClose {
                error_code: VarInt::from_u32(0),
                reason: Bytes::new(),
            }),
            ConnectionError::TimedOut,
        ] {
            assert_eq!(Failed::of(&e), Failed::Abandoned, "{e}");
            assert_eq!(Failed::of(&e).refusal_reason(), None);
        }
    }

    #[test]
    fn a_tls_alert_from_the_client_is_the_relay_certificate_refused() {
        // bad_certificate (42) and unknown_ca (48), sent by the client.
        for alert in [42, 48] {
            let e = closed_by_client(TransportErrorCode::crypto(alert));
            assert_eq!(Failed::of(&e), Failed::RefusedByClient);
            assert_eq!(Failed::of(&e).refusal_reason(), Some("handshake"));
        }
    }

    #[test]
    fn the_relay_own_refusals_keep_their_reasons() {
        let local = |code| {
            ConnectionError::TransportError(TransportError {
                code,
                frame: None,
                reason: String::new(),
            })
        };
        let revoked = local(TransportErrorCode::crypto(CERTIFICATE_REVOKED_ALERT));
        assert_eq!(Failed::of(&revoked).refusal_reason(), Some("revoked"));
        let unknown_ca = local(TransportErrorCode::crypto(48));
        assert_eq!(Failed::of(&unknown_ca), Failed::Refused);
        assert_eq!(Failed::of(&unknown_ca).refusal_reason(), Some("handshake"));
    }
}
