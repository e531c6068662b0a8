//! Connection and handshake metrics: connections open, accepted, refused
//! and replaced, handshakes in progress, timed out, refused and retried, and the
//! connections the QUIC endpoint holds state for.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::Reason;
use crate::handshake::RateGauges;

/// Handles to the connection and handshake metrics.
#[derive(Debug)]
pub struct ConnectionMetrics {
    /// Connections open now.
    pub active: Gauge,
    /// Connections established (handshake and identity passed).
    pub accepted: Counter,
    refused: Family<Reason, Counter>,
    replaced: Family<Reason, Counter>,
    /// QUIC handshakes in progress now.
    pub handshakes_in_progress: Gauge,
    /// Handshakes dropped at `server.handshake_timeout_secs`.
    pub handshakes_timed_out: Counter,
    handshakes_refused: Family<Reason, Counter>,
    /// Stateless QUIC Retry packets sent (handshake bound full, or the
    /// handshake rate above `server.handshake_retry_per_sec`).
    pub handshake_retries: Counter,
    /// New-handshake rate and whether it switched Retry on.
    pub(crate) handshake_rate: RateGauges,
    /// Connections quinn holds state for (handshaking, open or closing).
    pub quic: Gauge,
}

impl ConnectionMetrics {
    /// Registers the metrics in `r`, every refusal reason from the start.
    pub(super) fn new(r: &mut Registry) -> Self {
        let connections_active = Gauge::default();
        r.register(
            "connections_active",
            "QUIC connections open now",
            connections_active.clone(),
        );
        let connections_accepted = Counter::default();
        r.register(
            "connections_accepted",
            "Connections established (mutual TLS and identity passed)",
            connections_accepted.clone(),
        );
        let refused = Family::<Reason, Counter>::default();
        r.register(
            "connections_refused",
            "Connections refused, by reason (limit: server.max_connections; handshake: TLS failed, e.g. no, unknown or expired client certificate; revoked: the node certificate is revoked by a CRL (security.tls_crl_path); identity: no usable node name)",
            refused.clone(),
        );
        let replaced = Family::<Reason, Counter>::default();
        r.register(
            "connections_replaced",
            "Connections closed with CONNECTION_REPLACED (0x8) to make room for a newer one, by reason (per_node_cap: the node already held server.max_connections_per_node connections; its oldest was replaced)",
            replaced.clone(),
        );
        let handshakes_in_progress = Gauge::default();
        r.register(
            "handshakes_in_progress",
            "QUIC handshakes in progress (at most server.max_handshakes_in_progress); they hold no connection slot",
            handshakes_in_progress.clone(),
        );
        let handshakes_timed_out = Counter::default();
        r.register(
            "handshakes_timed_out",
            "Handshakes dropped unfinished after server.handshake_timeout_secs",
            handshakes_timed_out.clone(),
        );
        let handshakes_refused = Family::<Reason, Counter>::default();
        r.register(
            "handshakes_refused",
            "Handshakes ended by the relay before they finished, by reason (evicted: the oldest half-open one, to make room for an Initial from a validated address when server.max_handshakes_in_progress was full; retry_failed: a Retry could not be sent; shutting_down)",
            handshakes_refused.clone(),
        );
        let handshake_retries = Counter::default();
        r.register(
            "handshake_retries",
            "Stateless QUIC Retry packets sent to validate an address: while new handshakes per second were above server.handshake_retry_per_sec (or always, with 0), or while server.max_handshakes_in_progress was full",
            handshake_retries.clone(),
        );
        let handshake_rate = RateGauges::default();
        r.register(
            "handshake_initials_per_second",
            "QUIC Initials received in the last whole second (the rate compared with server.handshake_retry_per_sec)",
            handshake_rate.per_sec.clone(),
        );
        r.register(
            "handshake_address_validation",
            "1 while every Initial from an address not yet validated gets a QUIC Retry (rate above server.handshake_retry_per_sec, or 0 configured), else 0",
            handshake_rate.validating.clone(),
        );
        let quic_connections = Gauge::default();
        r.register(
            "quic_connections",
            "Connections the QUIC endpoint holds state for: handshaking, established or closing",
            quic_connections.clone(),
        );
        for reason in ["limit", "handshake", "revoked", "identity"] {
            let _ = refused.get_or_create(&Reason::new(reason));
        }
        let _ = replaced.get_or_create(&Reason::new("per_node_cap"));
        for reason in ["evicted", "retry_failed", "shutting_down"] {
            let _ = handshakes_refused.get_or_create(&Reason::new(reason));
        }
        Self {
            active: connections_active,
            accepted: connections_accepted,
            refused,
            replaced,
            handshakes_in_progress,
            handshakes_timed_out,
            handshakes_refused,
            handshake_retries,
            handshake_rate,
            quic: quic_connections,
        }
    }

    /// Counts a refused connection (`limit`, `handshake`, `revoked` or `identity`).
    pub fn refused(&self, reason: &str) {
        self.refused.get_or_create(&Reason::new(reason)).inc();
    }

    /// Counts a connection closed to make room for a newer one
    /// (`per_node_cap`).
    pub fn replaced(&self, reason: &str) {
        self.replaced.get_or_create(&Reason::new(reason)).inc();
    }

    /// Counts a handshake the relay ended (`evicted`, `retry_failed` or
    /// `shutting_down`).
    pub fn handshake_refused(&self, reason: &str) {
        self.handshakes_refused
            .get_or_create(&Reason::new(reason))
            .inc();
    }
}
