//! Client settings and their defaults, and the hook that is told of the
//! connection's state ([`EventHook`]).

use std::sync::Arc;
use std::time::Duration;

use super::error::ConnectFailure;
use crate::tls::TlsMaterial;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Relay (or load balancer) address, `host:port`.
    pub addr: String,
    /// Name the relay's certificate must carry.
    pub server_name: String,
    /// Our certificate, key, and the CA that issued the relay's certificate.
    pub tls: TlsMaterial,
    /// Batches sent and not yet acked, at most.
    pub window: usize,
    /// Points per batch, at most (the relay's `limits.max_batch_size`).
    pub max_batch_points: usize,
    /// Largest frame the relay accepts.
    pub max_frame_bytes: usize,
    /// QUIC keep-alive interval (keeps load-balancer flows alive). The
    /// client pings at least every third of `liveness_timeout` as well.
    pub keep_alive: Duration,
    /// QUIC idle timeout, the transport's own last resort.
    pub idle_timeout: Duration,
    /// The relay is taken for gone when nothing at all, not even the QUIC
    /// acknowledgement of a ping, has come from it for this long: the
    /// client reconnects (from a fresh UDP port) and resends. A live relay
    /// answers every ping within a round trip, however slow its acks are.
    /// On a path slower than that (eight round trips, as quinn estimates
    /// them, acknowledgement delays included) the longer time applies.
    pub liveness_timeout: Duration,
    /// A batch unacked for this long, while the relay still answers at the
    /// transport, makes the client reconnect and resend (a relay that is
    /// alive but stuck). Durable acks legitimately take up to the relay's
    /// flush age, so keep it well above that.
    pub ack_timeout: Duration,
    /// A handshake not finished in this long is a failed attempt.
    pub connect_timeout: Duration,
    /// Longest pause between reconnect attempts. The pause before attempt
    /// n+1 after n failed ones is drawn at random from 0 to
    /// min(`max_backoff`, 250 ms × 2^n) (full jitter), so that agents of a
    /// failed relay spread out ([`reconnect_pause`](super::reconnect_pause)).
    pub max_backoff: Duration,
    /// Told of every connection made and lost and of every failed attempt
    /// (the agent's metrics follow the connection through it).
    pub events: Option<EventHook>,
    /// An endpoint (UDP socket) to connect through, shared with other
    /// clients: a load generator's many simulated nodes, which would
    /// otherwise each hold quinn's receive buffer of about 3 MiB. `None`
    /// (an agent): the client opens its own and moves it to a fresh port
    /// before each reconnect, so a balancer that hashes the source port
    /// sees a new flow. A shared endpoint keeps its port.
    pub endpoint: Option<quinn::Endpoint>,
}

/// What the client tells its [`EventHook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// A connection to the relay is up (the first one or a reconnect).
    Connected,
    /// The connection is gone (lost, ended by the relay's GoAway, or closed
    /// by the client); the client reconnects unless it is closing.
    Disconnected,
    /// A connection attempt failed.
    ConnectFailed(ConnectFailure),
}

/// A function told of every [`ConnectionEvent`], called from the client's
/// own tasks: keep it quick (count, set a gauge).
#[derive(Clone)]
pub struct EventHook(Arc<dyn Fn(ConnectionEvent) + Send + Sync>);

impl EventHook {
    /// A hook calling `f`.
    pub fn new(f: impl Fn(ConnectionEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Tells the hook.
    pub fn emit(&self, event: ConnectionEvent) {
        (self.0)(event);
    }
}

impl std::fmt::Debug for EventHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventHook")
    }
}

impl ClientConfig {
    /// Tells the hook of `event`, if there is one.
    pub(super) fn emit(&self, event: ConnectionEvent) {
        if let Some(h) = &self.events {
            h.emit(event);
        }
    }

    /// Settings with the defaults of `docs/protocol.md`.
    pub fn new(addr: impl Into<String>, server_name: impl Into<String>, tls: TlsMaterial) -> Self {
        Self {
            addr: addr.into(),
            server_name: server_name.into(),
            tls,
            window: 512,
            max_batch_points: 1000,
            max_frame_bytes: crate::codec::DEFAULT_MAX_FRAME_BYTES,
            keep_alive: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            liveness_timeout: Duration::from_secs(3),
            ack_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(4),
            max_backoff: Duration::from_secs(5),
            events: None,
            endpoint: None,
        }
    }
}
