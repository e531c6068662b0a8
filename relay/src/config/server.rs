//! `server`: the QUIC listener, its admission bounds, timeouts and drain.

use std::net::SocketAddr;
use std::time::Duration;

use horizon_shared::config::check::{above, between, positive, socket_addr};
use horizon_shared::config::host::{host_name, plain_name};
use horizon_shared::config::{ConfigError, invalid};
use serde::Deserialize;

use crate::quic_lb::{self, ServerId};

/// `server`: the QUIC listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// UDP address to listen on.
    pub listen_addr: String,
    /// Authenticated connections held at once (handshake and node identity
    /// passed); beyond this new connections are refused. Handshakes in
    /// progress do not count here.
    pub max_connections: usize,
    /// Authenticated connections one node (one certificate identity) may
    /// hold at once. A new connection of a node at this cap replaces the
    /// node's oldest, which is closed with `CONNECTION_REPLACED`, instead
    /// of being refused; so one node never holds more than this many of
    /// the `max_connections` slots.
    pub max_connections_per_node: usize,
    /// QUIC handshakes in progress at once. When full, an Initial from an
    /// address not yet validated gets a stateless Retry; one from a
    /// validated address takes the place of the oldest half-open handshake.
    pub max_handshakes_in_progress: usize,
    /// New handshakes per second (Initials received, over the last second)
    /// above which every Initial from an address not yet validated gets a
    /// stateless QUIC Retry, whatever the bound above; 0: always.
    pub handshake_retry_per_sec: u32,
    /// A handshake not finished within this many seconds is dropped (the
    /// idle timeout of established connections is separate).
    pub handshake_timeout_secs: u64,
    /// A connection with no packets from the peer for this long is closed.
    pub connection_timeout_secs: u64,
    /// Interval of QUIC keep-alive packets; must stay well under the 120 s a
    /// cloud UDP load balancer keeps an idle flow.
    pub keep_alive_secs: u64,
    /// Bidirectional streams one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// Batches one connection may have read and not yet acked, across its
    /// streams; beyond this its streams stop being read until acks go out.
    pub max_in_flight_batches_per_connection: usize,
    /// QUIC receive window of one connection, in bytes: data the agent may
    /// send ahead of what the relay has read. Bounds what the transport
    /// buffers per connection while its streams are not being read.
    pub receive_window_bytes: u64,
    /// Name of this relay in logs and object names; defaults to the host name.
    pub relay_id: String,
    /// On SIGTERM: how long agents get to finish the batches they are
    /// sending (after GoAway) before their streams are reset.
    pub drain_grace_secs: u64,
    /// On SIGTERM, after the streams: how long the sinks get to store what
    /// they hold. The relay exits within about the sum of the two plus 3 s.
    pub drain_flush_secs: u64,
    /// QUIC-LB server ID (`0x` and 16 hex digits, as AWS writes a target's
    /// `QuicServerId`): when set, every connection ID carries it, so a load
    /// balancer that routes by connection ID keeps each connection on this
    /// relay. Empty: random connection IDs.
    pub quic_lb_server_id: String,
    /// Length of the connection IDs issued with a server ID, 13 to 20 bytes.
    pub quic_lb_cid_len: usize,
    /// Receive buffer of the QUIC socket (`SO_RCVBUF`), bytes; 0 leaves the
    /// kernel's default. The kernel caps it at `net.core.rmem_max`.
    pub udp_receive_buffer_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen_addr: "0.0.0.0:5001".into(),
            max_connections: 1000,
            max_connections_per_node: 4,
            max_handshakes_in_progress: 128,
            handshake_retry_per_sec: 100,
            handshake_timeout_secs: 5,
            connection_timeout_secs: 300,
            keep_alive_secs: 15,
            max_streams_per_connection: 16,
            max_in_flight_batches_per_connection: 1024,
            receive_window_bytes: 1 << 20,
            relay_id: String::new(),
            drain_grace_secs: 5,
            drain_flush_secs: 10,
            quic_lb_server_id: String::new(),
            quic_lb_cid_len: quic_lb::DEFAULT_CID_LEN,
            udp_receive_buffer_bytes: 8 << 20,
        }
    }
}

/// The `server` section after validation.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// QUIC listen address.
    pub listen_addr: SocketAddr,
    /// Authenticated connection cap.
    pub max_connections: usize,
    /// Connections one node may hold; a newer one replaces its oldest.
    pub max_connections_per_node: usize,
    /// Handshakes in progress cap.
    pub max_handshakes_in_progress: usize,
    /// Initials per second above which unvalidated addresses get a Retry.
    pub handshake_retry_per_sec: u32,
    /// Time a handshake may take.
    pub handshake_timeout: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Drain: time for streams to finish after GoAway.
    pub drain_grace: Duration,
    /// Drain: time for the sinks to flush.
    pub drain_flush: Duration,
    /// Streams per connection.
    pub max_streams_per_connection: u32,
    /// Read and unacked batches per connection.
    pub max_in_flight_per_connection: usize,
    /// QUIC receive window of one connection, bytes.
    pub receive_window: u64,
    /// Server ID and connection ID length for QUIC-LB routing, if set.
    pub quic_lb: Option<(ServerId, usize)>,
    /// This relay's name.
    pub relay_id: String,
    /// `SO_RCVBUF` of the QUIC socket, bytes; 0: the kernel's default.
    pub udp_receive_buffer: usize,
}

impl ServerConfig {
    /// Checks the section; errors name the `server.*` key.
    pub fn validate(&self) -> Result<ServerSettings, ConfigError> {
        let listen_addr = socket_addr("server.listen_addr", &self.listen_addr)?;
        positive("server.max_connections", self.max_connections)?;
        between(
            "server.max_connections_per_node",
            self.max_connections_per_node,
            1,
            1024,
        )?;
        between(
            "server.max_handshakes_in_progress",
            self.max_handshakes_in_progress,
            1,
            65_536,
        )?;
        between(
            "server.handshake_timeout_secs",
            self.handshake_timeout_secs,
            1,
            60,
        )?;
        positive(
            "server.max_streams_per_connection",
            self.max_streams_per_connection,
        )?;
        between(
            "server.max_in_flight_batches_per_connection",
            self.max_in_flight_batches_per_connection,
            1,
            65_536,
        )
        .map_err(|e| {
            e.because("each in-flight batch holds up to limits.max_batch_size points in memory")
        })?;
        between(
            "server.receive_window_bytes",
            self.receive_window_bytes,
            64 * 1024,
            256 * 1024 * 1024,
        )?;
        between("server.keep_alive_secs", self.keep_alive_secs, 1, 119)
            .map_err(|e| e.because("UDP load balancers forget idle flows after 120 s"))?;
        above(
            "server.connection_timeout_secs",
            self.connection_timeout_secs,
            "server.keep_alive_secs",
            self.keep_alive_secs,
        )?;
        let relay_id = if self.relay_id.is_empty() {
            host_name("relay")
        } else {
            self.relay_id.clone()
        };
        plain_name("server.relay_id", &relay_id)?;
        if self.udp_receive_buffer_bytes > 0 {
            between(
                "server.udp_receive_buffer_bytes",
                self.udp_receive_buffer_bytes,
                64 * 1024,
                1 << 30,
            )?;
        }
        Ok(ServerSettings {
            listen_addr,
            max_connections: self.max_connections,
            max_connections_per_node: self.max_connections_per_node,
            max_handshakes_in_progress: self.max_handshakes_in_progress,
            handshake_retry_per_sec: self.handshake_retry_per_sec,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            idle_timeout: Duration::from_secs(self.connection_timeout_secs),
            keep_alive: Duration::from_secs(self.keep_alive_secs),
            drain_grace: Duration::from_secs(self.drain_grace_secs),
            drain_flush: Duration::from_secs(self.drain_flush_secs),
            max_streams_per_connection: self.max_streams_per_connection,
            max_in_flight_per_connection: self.max_in_flight_batches_per_connection,
            receive_window: self.receive_window_bytes,
            quic_lb: self.quic_lb()?,
            relay_id,
            udp_receive_buffer: self.udp_receive_buffer_bytes,
        })
    }

    fn quic_lb(&self) -> Result<Option<(ServerId, usize)>, ConfigError> {
        if self.quic_lb_server_id.is_empty() {
            return Ok(None);
        }
        let id = ServerId::parse(&self.quic_lb_server_id)
            .map_err(|e| invalid("server.quic_lb_server_id", e.to_string()))?;
        between(
            "server.quic_lb_cid_len",
            self.quic_lb_cid_len,
            quic_lb::MIN_CID_LEN,
            quic_lb::MAX_CID_LEN,
        )
        .map_err(|e| {
            e.because("first octet, 8-byte server ID, a nonce of at least 4 bytes; QUIC allows 20")
        })?;
        Ok(Some((id, self.quic_lb_cid_len)))
    }
}
