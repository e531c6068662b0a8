//! Connection and handshake metrics: connections open, accepted, refused
//! and replaced, handshakes in progress, timed out, refused and retried, and the
//! connections the QUIC endpoint holds state for.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::Reason;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::handshake::{Gauges, RateGauges};

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
    /// Handshakes the client closed, or stopped answering, before they
    /// finished.
    pub handshakes_abandoned: Counter,
    handshakes_refused: Family<Reason, Counter>,
    /// Stateless QUIC Retry packets sent (handshake bound full, or the
    /// handshake rate above `server.handshake_retry_per_sec`).
    pub handshake_retries: Counter,
    /// New-handshake rate and whether it switched Retry on.
    pub(crate) handshake_rate: RateGauges,
    /// Initials from validated addresses waiting for a handshake place.
    pub handshakes_queued: Gauge,
    /// Seconds from the start of a handshake to its end, finished or not.
    pub handshake_seconds: Histogram,
    /// Connections quinn holds state for (handshaking, open or closing).
    pub quic: Gauge,
    /// The QUIC socket's receive buffer as the kernel reports it.
    pub udp_receive_buffer: Gauge,
    /// Datagrams the kernel dropped at the QUIC socket.
    pub udp_receive_drops: Counter,
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
            "Connections refused, by reason (limit: server.max_connections; handshake: TLS failed, e.g. no, unknown or expired client certificate, or the client refused the relay's certificate (a client that gave up is counted in handshakes_abandoned_total instead); revoked: the node certificate is revoked by a CRL (security.tls_crl_path); identity: no usable node name)",
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
        let handshakes_abandoned = Counter::default();
        r.register(
            "handshakes_abandoned",
            "Handshakes the client closed, or stopped answering, before they finished: clients that gave up, most often at their connect timeout in a connect storm",
            handshakes_abandoned.clone(),
        );
        let handshakes_refused = Family::<Reason, Counter>::default();
        r.register(
            "handshakes_refused",
            "Handshakes ended, or Initials dropped, by the relay before they finished, by reason (evicted: a half-open one running for 3 s, to make room for an Initial from a validated address when server.max_handshakes_in_progress was full; queue_full: an Initial from a validated address dropped, the bound and its queue full; queue_timeout: one dropped after 1 s in the queue; retry_failed: a Retry could not be sent; shutting_down)",
            handshakes_refused.clone(),
        );
        let handshake_retries = Counter::default();
        r.register(
            "handshake_retries",
            "Stateless QUIC Retry packets sent to validate an address: while new handshakes per second were above server.handshake_retry_per_sec (or always, with 0), or while server.max_handshakes_in_progress was full",
            handshake_retries.clone(),
        );
        let handshakes_queued = Gauge::default();
        r.register(
            "handshakes_queued",
            "Initials from validated addresses waiting for a place among server.max_handshakes_in_progress (at most 4 per place, each for at most 1 s)",
            handshakes_queued.clone(),
        );
        // 1 ms to 8 s.
        let handshake_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        r.register(
            "handshake_seconds",
            "Time from the start of a QUIC handshake (its place taken; a wait in the queue not counted) to its end: finished, failed, timed out or evicted",
            handshake_seconds.clone(),
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
        let udp_receive_buffer = Gauge::default();
        r.register(
            "udp_receive_buffer_bytes",
            "Receive buffer of the QUIC socket as the kernel reports it (SO_RCVBUF read back: twice the server.udp_receive_buffer_bytes asked for, unless net.core.rmem_max capped it)",
            udp_receive_buffer.clone(),
        );
        let udp_receive_drops = Counter::default();
        r.register(
            "udp_receive_drops",
            "Datagrams the kernel dropped at the QUIC socket, its receive buffer full (the drops column of /proc/net/udp; Linux only). Peers see lost packets: raise server.udp_receive_buffer_bytes and net.core.rmem_max",
            udp_receive_drops.clone(),
        );
        for reason in ["limit", "handshake", "revoked", "identity"] {
            let _ = refused.get_or_create(&Reason::new(reason));
        }
        let _ = replaced.get_or_create(&Reason::new("per_node_cap"));
        for reason in [
            "evicted",
            "queue_full",
            "queue_timeout",
            "retry_failed",
            "shutting_down",
        ] {
            let _ = handshakes_refused.get_or_create(&Reason::new(reason));
        }
        Self {
            active: connections_active,
            accepted: connections_accepted,
            refused,
            replaced,
            handshakes_in_progress,
            handshakes_timed_out,
            handshakes_abandoned,
            handshakes_refused,
            handshake_retries,
            handshake_rate,
            handshakes_queued,
            handshake_seconds,
            quic: quic_connections,
            udp_receive_buffer,
            udp_receive_drops,
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

    /// Counts a handshake the relay ended, or an Initial it dropped
    /// (`evicted`, `queue_full`, `queue_timeout`, `retry_failed` or
    /// `shutting_down`).
    pub fn handshake_refused(&self, reason: &str) {
        self.handshakes_refused
            .get_or_create(&Reason::new(reason))
            .inc();
    }
}

impl ConnectionMetrics {
    /// The gauges the handshake admission keeps.
    pub(crate) fn handshake_gauges(&self) -> Gauges {
        Gauges {
            in_progress: self.handshakes_in_progress.clone(),
            queued: self.handshakes_queued.clone(),
            rate: self.handshake_rate.clone(),
        }
    }
}
