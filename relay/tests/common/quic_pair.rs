//! A QUIC client and server run through quinn-proto's state machines in
//! memory, a millisecond at a time, for tests of the QUIC stack's own
//! behaviour (no sockets, no clocks: deterministic).

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
pub struct Side {
    pub addr: SocketAddr,
    pub endpoint: Endpoint,
    pub conn: Option<(ConnectionHandle, Connection)>,
    /// Hold the connection's endpoint events back instead of handling them.
    pub hold: bool,
    pub held: Vec<EndpointEvent>,
}

impl Side {
    pub fn new(addr: &str, server: Option<quinn_proto::ServerConfig>) -> Self {
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
    pub fn endpoint_events(&mut self) {
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
    pub fn transmit(&mut self, now: Instant) -> Vec<BytesMut> {
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
    pub fn receive(&mut self, now: Instant, from: SocketAddr, datagram: BytesMut) {
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
    pub fn drain(&mut self) -> ConnectionHandle {
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
pub fn run(client: &mut Side, server: &mut Side, now: &mut Instant) {
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

/// A client connecting to a server with `transport` (none: quinn's
/// defaults), before any packet is exchanged; [`run`] carries the handshake.
pub fn pair(transport: Option<quinn_proto::TransportConfig>) -> (Side, Side, Instant) {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(dir.path()).unwrap();
    let server_tls = TlsMaterial::load(&pki.server_cert, &pki.server_key, &pki.ca_cert).unwrap();
    let (cert, key) = pki.client("gpu-node-1").unwrap();
    let client_tls = TlsMaterial::load(&cert, &key, &pki.ca_cert).unwrap();
    let mut server_config = quic_server_config(&server_tls).unwrap();
    if let Some(t) = transport {
        server_config.transport_config(Arc::new(t));
    }
    let mut client = Side::new("127.0.0.1:40001", None);
    let server = Side::new("127.0.0.1:5001", Some(server_config));
    let now = Instant::now();
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
    (client, server, now)
}
