//! The QUIC stack's endpoint must not panic on a connection event that
//! reaches it after the connection was drained.
//!
//! quinn-proto 0.11.19 indexed its connection slab with the event's handle
//! for `ResetToken`, `NeedIdentifiers` and `RetireConnectionId`, so such an
//! event for a handle already removed by `Drained` panicked with "invalid
//! key" and took the relay down (issue #28, under scarce CPU). The
//! workspace builds the patched copy in `vendor/quinn-proto`
//! (vendor/README.md). This test drives a real client and server
//! connection through quinn-proto's state machines, in memory: it holds
//! back the three kinds of event as the connections emit them, drains the
//! connections, and then hands the held events to their endpoints, which
//! must ignore them. On the unpatched crate it panics.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use horizon_shared::devcerts::DevPki;
use horizon_shared::tls::{TlsMaterial, quic_client_config, quic_server_config};
use quinn_proto::{
    Connection, ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, EndpointEvent,
};

/// One side: its endpoint, its one connection, and the endpoint events the
/// connection emitted that were held back instead of handled.
struct Side {
    addr: SocketAddr,
    endpoint: Endpoint,
    conn: Option<(ConnectionHandle, Connection)>,
    hold: bool,
    held: Vec<EndpointEvent>,
}

impl Side {
    fn new(addr: &str, server: Option<quinn_proto::ServerConfig>) -> Self {
        Self {
            addr: addr.parse().unwrap(),
            endpoint: Endpoint::new(
                Arc::new(EndpointConfig::default()),
                server.map(Arc::new),
                false,
                None,
            ),
            conn: None,
            hold: false,
            held: Vec::new(),
        }
    }

    /// Hands the connection's endpoint events to the endpoint (or holds
    /// them back), and the endpoint's answers to the connection.
    fn endpoint_events(&mut self) {
        let Some((ch, conn)) = self.conn.as_mut() else {
            return;
        };
        while let Some(event) = conn.poll_endpoint_events() {
            if self.hold {
                self.held.push(event);
            } else if let Some(answer) = self.endpoint.handle_event(*ch, event) {
                conn.handle_event(answer);
            }
        }
        while conn.poll().is_some() {}
    }

    /// The datagrams the connection has to send now.
    fn transmit(&mut self, now: Instant) -> Vec<BytesMut> {
        let Some((_, conn)) = self.conn.as_mut() else {
            return Vec::new();
        };
        if conn.poll_timeout().is_some_and(|t| t <= now) {
            conn.handle_timeout(now);
        }
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(t) = conn.poll_transmit(now, 1, &mut buf) {
            out.push(BytesMut::from(&buf[..t.size]));
            buf.clear();
        }
        out
    }

    /// Takes in a datagram from `from`.
    fn receive(&mut self, now: Instant, from: SocketAddr, datagram: BytesMut) {
        let mut buf = Vec::new();
        match self
            .endpoint
            .handle(now, from, None, None, datagram, &mut buf)
        {
            Some(DatagramEvent::NewConnection(incoming)) => {
                let accepted = self.endpoint.accept(incoming, now, &mut buf, None);
                self.conn = Some(accepted.map_err(|e| e.cause).unwrap());
            }
            Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                let (own, conn) = self.conn.as_mut().unwrap();
                assert_eq!(*own, ch);
                conn.handle_event(event);
            }
            Some(DatagramEvent::Response(_)) | None => {}
        }
    }

    /// Forgets the connection the way quinn does when it is dropped or has
    /// drained: a `Drained` event, after which its handle is stale.
    fn drain(&mut self) -> ConnectionHandle {
        let (ch, _) = self.conn.take().unwrap();
        assert!(
            self.endpoint
                .handle_event(ch, EndpointEvent::drained())
                .is_none()
        );
        assert_eq!(self.endpoint.open_connections(), 0);
        ch
    }
}

/// Exchanges datagrams both ways, a millisecond at a time, until neither
/// side has anything more to send (bounded).
fn run(client: &mut Side, server: &mut Side, now: &mut Instant) {
    let mut quiet = 0;
    for _ in 0..2_000 {
        client.endpoint_events();
        server.endpoint_events();
        let mut queue: VecDeque<(bool, BytesMut)> = VecDeque::new();
        queue.extend(client.transmit(*now).into_iter().map(|d| (true, d)));
        queue.extend(server.transmit(*now).into_iter().map(|d| (false, d)));
        if queue.is_empty() {
            quiet += 1;
            if quiet > 50 {
                return;
            }
        } else {
            quiet = 0;
        }
        while let Some((to_server, datagram)) = queue.pop_front() {
            if to_server {
                server.receive(*now, client.addr, datagram);
            } else {
                client.receive(*now, server.addr, datagram);
            }
        }
        *now += Duration::from_millis(1);
    }
}

fn kind(event: &EndpointEvent) -> String {
    let debug = format!("{event:?}");
    debug
        .trim_start_matches("EndpointEvent(")
        .split(['(', ')'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn events_for_a_drained_connection_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(dir.path()).unwrap();
    let server_tls = TlsMaterial::load(&pki.server_cert, &pki.server_key, &pki.ca_cert).unwrap();
    let (cert, key) = pki.client("gpu-node-1").unwrap();
    let client_tls = TlsMaterial::load(&cert, &key, &pki.ca_cert).unwrap();

    let mut client = Side::new("127.0.0.1:40001", None);
    let mut server = Side::new(
        "127.0.0.1:5001",
        Some(quic_server_config(&server_tls).unwrap()),
    );
    let mut now = Instant::now();
    client.conn = Some(
        client
            .endpoint
            .connect(
                now,
                quic_client_config(&client_tls).unwrap(),
                server.addr,
                "localhost",
            )
            .unwrap(),
    );
    // The client's events (the server's reset token, its own connection
    // IDs) are held from the start; the server's are handled, so that it
    // issues the connection IDs the client will move to.
    client.hold = true;
    run(&mut client, &mut server, &mut now);
    let (_, conn) = client.conn.as_ref().unwrap();
    assert!(!conn.is_handshaking(), "the handshake completed");
    assert!(server.conn.is_some(), "the server accepted");

    // The client moves to a new connection ID and retires the old one: the
    // server's connection then emits RetireConnectionId, held this time.
    server.hold = true;
    client.conn.as_mut().unwrap().1.local_address_changed();
    run(&mut client, &mut server, &mut now);

    let kinds: Vec<String> = client.held.iter().chain(&server.held).map(kind).collect();
    for expected in ["ResetToken", "NeedIdentifiers", "RetireConnectionId"] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "a {expected} event was held back: {kinds:?}"
        );
    }

    // Both connections drain; then their held events arrive, stale.
    for side in [&mut client, &mut server] {
        let ch = side.drain();
        for event in std::mem::take(&mut side.held) {
            assert!(
                side.endpoint.handle_event(ch, event).is_none(),
                "a stale event is ignored, with nothing for the connection"
            );
        }
        assert_eq!(side.endpoint.open_connections(), 0);
    }
}
