//! The background task of a [`Client`](super::Client): holds one connection
//! and one stream at a time, writes queued batches, reads acks, and on any
//! failure reconnects with backoff and resends every unacked batch.
//!
//! A dead relay is told from a slow one at the transport: the client pings
//! at least every third of `liveness_timeout`, and a live relay's QUIC stack
//! acknowledges every ping within a round trip whatever its batch acks are
//! doing, so `liveness_timeout` without a QUIC acknowledgement means the
//! relay (or the path to it) is gone. Every reconnect starts from a fresh UDP port, so a
//! balancer that hashes the 5-tuple picks a relay anew instead of sending
//! the agent back to the dead one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tracing::{debug, info, warn};

use super::backoff::reconnect_pause;
use super::batch::Acked;
use super::config::{ClientConfig, ConnectionEvent};
use super::encoder::StreamEncoder;
use super::error::{ClientError, ConnectFailure};
use super::liveness::{Heard, LIVENESS_CHECK, confirmed, liveness_limit};
use super::state::Inner;
use crate::codec::FrameReader;
use crate::proto::{RelayFrame, error_code, relay_frame};

/// How a connection ended.
enum End {
    /// The client is closing.
    Closing,
    /// The relay sent GoAway and then finished the stream: reconnect at once.
    GoAway,
}

pub(super) struct Driver {
    config: ClientConfig,
    inner: Arc<Inner>,
    endpoint: Endpoint,
    /// The endpoint is `config.endpoint`, shared with other clients: it
    /// keeps its port.
    shared: bool,
    quic: quinn::ClientConfig,
}

impl Driver {
    pub(super) fn new(config: ClientConfig, inner: Arc<Inner>) -> Result<Self, ClientError> {
        let mut client_cfg = crate::tls::quic_client_config(&config.tls)
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(config.keep_alive.min(config.liveness_timeout / 3)));
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(config.idle_timeout)
                .map_err(|e| ClientError::Setup(e.to_string()))?,
        ));
        client_cfg.transport_config(Arc::new(transport));
        let (endpoint, shared) = match &config.endpoint {
            Some(e) => (e.clone(), true),
            None => (open_endpoint()?, false),
        };
        Ok(Self {
            config,
            inner,
            endpoint,
            shared,
            quic: client_cfg,
        })
    }

    /// The client's endpoint (a handle; the driver keeps using it).
    pub(super) fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    async fn resolve(&self) -> Result<SocketAddr, ClientError> {
        tokio::net::lookup_host(&self.config.addr)
            .await
            .map_err(|_| ClientError::Resolve(self.config.addr.clone()))?
            .next()
            .ok_or_else(|| ClientError::Resolve(self.config.addr.clone()))
    }

    /// One connection attempt (not reported to the hook: the caller does).
    pub(super) async fn connect(&self) -> Result<Connection, ClientError> {
        let addr = self.resolve().await?;
        let err = |reason: String, failure| ClientError::Connect {
            addr: self.config.addr.clone(),
            reason,
            failure,
        };
        let connecting = self
            .endpoint
            .connect_with(self.quic.clone(), addr, &self.config.server_name)
            .map_err(|e| err(e.to_string(), ConnectFailure::of_connect(&e)))?;
        let conn = tokio::time::timeout(self.config.connect_timeout, connecting)
            .await
            .map_err(|_| {
                err(
                    format!(
                        "handshake timed out after {:?}",
                        self.config.connect_timeout
                    ),
                    ConnectFailure::Timeout,
                )
            })?
            .map_err(|e| err(e.to_string(), ConnectFailure::of_handshake(&e)))?;
        Ok(conn)
    }

    pub(super) async fn run(self, first: Connection) {
        let mut conn = Some(first);
        // Failed connect attempts since the last confirmed connection.
        let mut failures = 0u32;
        loop {
            let c = match conn.take() {
                Some(c) => c,
                None => {
                    if !self.shared
                        && let Err(e) = fresh_port(&self.endpoint)
                    {
                        warn!(error = %e, "cannot open a fresh UDP port; reconnecting from the old one");
                    }
                    let attempt = tokio::select! {
                        r = self.connect() => r,
                        () = self.inner.closing.cancelled() => break,
                    };
                    match attempt {
                        Ok(c) => {
                            self.inner.counters.connects.fetch_add(1, Ordering::Relaxed);
                            self.config.emit(ConnectionEvent::Connected);
                            info!(addr = %self.config.addr, remote = %c.remote_address(), after_failed_attempts = failures, "reconnected");
                            c
                        }
                        Err(e) => {
                            self.inner
                                .counters
                                .connection_errors
                                .fetch_add(1, Ordering::Relaxed);
                            self.config
                                .emit(ConnectionEvent::ConnectFailed(e.connect_failure()));
                            failures += 1;
                            let pause = reconnect_pause(failures, self.config.max_backoff);
                            warn!(error = %e, retry_in = ?pause, "connect failed");
                            tokio::select! {
                                () = tokio::time::sleep(pause) => {}
                                () = self.inner.closing.cancelled() => break,
                            }
                            continue;
                        }
                    }
                }
            };
            let ended = self.serve(&c).await;
            self.config.emit(ConnectionEvent::Disconnected);
            match ended {
                Ok(End::Closing) => {
                    c.close(error_code::NO_ERROR.into(), b"client closing");
                    break;
                }
                Ok(End::GoAway) => {
                    failures = 0;
                    debug!("relay sent GoAway; reconnecting");
                    c.close(error_code::NO_ERROR.into(), b"go away");
                }
                Err(e) => {
                    let counters = &self.inner.counters;
                    counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                    // The local address tells which of a host's flows (or
                    // which shared endpoint) lost its relay.
                    let local = self
                        .endpoint
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    let pending = self.inner.lock_pending().len();
                    if confirmed(&c) {
                        counters.connections_lost.fetch_add(1, Ordering::Relaxed);
                        failures = 0;
                        warn!(error = %e, %local, remote = %c.remote_address(), pending, "connection lost; will resend unacked batches");
                    } else {
                        // The relay ended the handshake, or went silent,
                        // before confirming it: a failed attempt, backed
                        // off as one (a relay in a connect storm).
                        counters.unconfirmed.fetch_add(1, Ordering::Relaxed);
                        failures += 1;
                        let failure = c.close_reason().map_or(ConnectFailure::Timeout, |r| {
                            ConnectFailure::of_handshake(&r)
                        });
                        self.config.emit(ConnectionEvent::ConnectFailed(failure));
                        warn!(error = %e, %local, remote = %c.remote_address(), pending, "the relay never confirmed the handshake (a relay busy with a connect storm?); reconnecting");
                    }
                    c.close(error_code::NO_ERROR.into(), b"reconnecting");
                    // A random pause, so the agents of a failed relay do not
                    // all reconnect in the same instant: short after a lost
                    // connection, growing with failed attempts.
                    tokio::select! {
                        () = tokio::time::sleep(reconnect_pause(failures, self.config.max_backoff)) => {}
                        () = self.inner.closing.cancelled() => break,
                    }
                }
            }
        }
        // Whatever is still pending will never be acked by this client.
        let pending = std::mem::take(&mut *self.inner.lock_pending());
        for (_, mut f) in pending {
            if let Some(tx) = f.reply.take() {
                let _ = tx.send(Err(ClientError::Closed));
            }
        }
        self.inner.idle.notify_waiters();
        // Let the close reach the relay, but never hang an agent's shutdown on
        // it. (A shared endpoint outlives this client and sends it anyway;
        // its idleness is every client's.)
        if !self.shared {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        }
    }

    /// Runs one connection: one stream, a writer and a reader side by side.
    async fn serve(&self, conn: &Connection) -> Result<End, ClientError> {
        let (send, recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
        let going_away = tokio_util::sync::CancellationToken::new();
        tokio::select! {
            r = self.write_loop(send, &going_away) => r.map(|()| End::Closing),
            r = self.read_loop(conn, recv, &going_away) => r,
            () = self.inner.closing.cancelled() => Ok(End::Closing),
        }
    }

    async fn write_loop(
        &self,
        mut send: SendStream,
        going_away: &tokio_util::sync::CancellationToken,
    ) -> Result<(), ClientError> {
        let mut encoder = StreamEncoder::new();
        let mut cursor = 0u64;
        let mut buf = BytesMut::new();
        loop {
            if going_away.is_cancelled() {
                let _ = send.finish();
                // Keep the reader running until the relay finishes its side.
                std::future::pending::<()>().await;
            }
            let batches: Vec<_> = self
                .inner
                .lock_pending()
                .range(cursor..)
                .map(|(s, f)| (*s, f.batch.clone()))
                .collect();
            if batches.is_empty() {
                tokio::select! {
                    () = self.inner.wake.notified() => {}
                    () = going_away.cancelled() => {}
                    () = self.inner.closing.cancelled() => return Ok(()),
                }
                continue;
            }
            buf.clear();
            {
                let registry = self
                    .inner
                    .registry
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (seq, batch) in &batches {
                    encoder.encode(*seq, batch, &registry, &mut buf);
                }
            }
            {
                let now = Instant::now();
                let mut pending = self.inner.lock_pending();
                for (seq, _) in &batches {
                    if let Some(f) = pending.get_mut(seq) {
                        if f.attempts > 0 {
                            self.inner.counters.resends.fetch_add(1, Ordering::Relaxed);
                        }
                        f.attempts += 1;
                        f.sent_at = Some(now);
                    }
                }
            }
            cursor = batches.last().map_or(cursor, |(s, _)| s + 1);
            send.write_all(&buf).await.map_err(|e| lost(&e))?;
        }
    }

    async fn read_loop(
        &self,
        conn: &Connection,
        recv: RecvStream,
        going_away: &tokio_util::sync::CancellationToken,
    ) -> Result<End, ClientError> {
        let mut reader = FrameReader::new(recv, self.config.max_frame_bytes);
        let mut tick = tokio::time::interval(LIVENESS_CHECK);
        let mut heard = Heard::new(conn);
        loop {
            let frame = tokio::select! {
                f = reader.next::<RelayFrame>() => f.map_err(|e| lost(&e))?,
                _ = tick.tick() => {
                    let silent = heard.silent_for(conn);
                    let limit = liveness_limit(self.config.liveness_timeout, conn.rtt());
                    if silent > limit {
                        if confirmed(conn) {
                            self.inner.counters.silences.fetch_add(1, Ordering::Relaxed);
                        }
                        return Err(ClientError::Connection(format!(
                            "relay silent for {silent:.1?} (nothing acknowledged, pings unanswered; liveness timeout {limit:?}): assuming it is gone"
                        )));
                    }
                    self.check_ack_timeout()?;
                    continue;
                }
            };
            let Some(frame) = frame else {
                return if going_away.is_cancelled() {
                    Ok(End::GoAway)
                } else {
                    Err(ClientError::Connection("relay finished the stream".into()))
                };
            };
            match frame.kind {
                Some(relay_frame::Kind::Ack(ack)) => self.complete(ack),
                Some(relay_frame::Kind::GoAway(g)) => {
                    info!(reason = %g.reason, "relay is going away");
                    going_away.cancel();
                }
                None => {}
            }
        }
    }

    fn complete(&self, ack: crate::proto::BatchAck) {
        let mut pending = self.inner.lock_pending();
        // An ack for a batch no longer pending (acked before a reconnect) is ignored.
        if let Some(mut f) = pending.remove(&ack.sequence) {
            let latency = f.sent_at.map_or(Duration::ZERO, |t| t.elapsed());
            if let Some(tx) = f.reply.take() {
                let _ = tx.send(Ok(Acked {
                    ack,
                    latency,
                    attempts: f.attempts,
                }));
            }
        }
        if pending.is_empty() {
            self.inner.idle.notify_waiters();
        }
    }

    fn check_ack_timeout(&self) -> Result<(), ClientError> {
        let oldest = self
            .inner
            .lock_pending()
            .values()
            .filter_map(|f| f.sent_at)
            .min();
        match oldest {
            Some(t) if t.elapsed() > self.config.ack_timeout => {
                Err(ClientError::Connection(format!(
                    "no ack for {:?}; assuming the relay is stuck",
                    self.config.ack_timeout
                )))
            }
            _ => Ok(()),
        }
    }
}

/// A lost connection, its error and the errors under it: "read failed:
/// connection lost: timed out", not only "read failed".
fn lost(e: &(dyn std::error::Error + 'static)) -> ClientError {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    ClientError::Connection(text)
}

/// A client endpoint on a port of its own (IPv6 and IPv4 where the host
/// has IPv6, else IPv4), with the kernel's default receive buffer.
pub fn open_endpoint() -> Result<Endpoint, ClientError> {
    open_endpoint_with(0)
}

/// [`open_endpoint`] with a receive buffer of `receive_buffer` bytes
/// (`SO_RCVBUF`, capped by `net.core.rmem_max`; 0: the kernel's default),
/// for an endpoint that many clients share.
pub fn open_endpoint_with(receive_buffer: usize) -> Result<Endpoint, ClientError> {
    let bind = |ip: std::net::IpAddr| {
        let bound = crate::udp::bind(SocketAddr::new(ip, 0), receive_buffer)?;
        if bound.capped() {
            warn!(
                asked = bound.asked,
                got = bound.receive_buffer,
                "the kernel capped the UDP receive buffer at net.core.rmem_max"
            );
        }
        Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            bound.socket,
            Arc::new(quinn::TokioRuntime),
        )
    };
    bind(std::net::Ipv6Addr::UNSPECIFIED.into())
        .or_else(|_| bind(std::net::Ipv4Addr::UNSPECIFIED.into()))
        .map_err(|e| ClientError::Setup(format!("cannot open UDP socket: {e}")))
}

/// Moves the endpoint to a new UDP socket on a fresh port, so that the
/// next connection is a new flow to a balancer that hashes the 5-tuple.
pub(super) fn fresh_port(endpoint: &Endpoint) -> std::io::Result<SocketAddr> {
    let local = endpoint.local_addr()?;
    let ip: std::net::IpAddr = if local.is_ipv6() {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    };
    let socket = std::net::UdpSocket::bind((ip, 0))?;
    endpoint.rebind(socket)?;
    endpoint.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_names_the_errors_under_it() {
        let read = quinn::ReadError::ConnectionLost(quinn::ConnectionError::TimedOut);
        let e = crate::codec::FrameError::Io(std::io::Error::from(read));
        let ClientError::Connection(text) = lost(&e) else {
            panic!("a connection error")
        };
        assert_eq!(text, "read failed: connection lost: timed out");
    }
}
