//! One agent connection: handshake, node identity, and its streams.
//!
//! Each stream has two halves: a reader that decodes, validates and hands
//! over batches strictly in order (so the stream's series dictionary is
//! applied in order), and a writer that sends their acks in the same order,
//! each once its points are stored (durable mode). A connection's readers
//! run ahead of its writers by at most
//! `server.max_in_flight_batches_per_connection` batches in all: a stream
//! takes its next batch's slot before reading it, so at the limit the batch
//! stays unread (with the agent, by QUIC flow control) until an earlier one
//! is acked; the wait is reported in its ack and in
//! `horizon_relay_throttled_batches_total`. The frames being read are
//! bounded in bytes per connection and relay-wide ([`frames`]). Bad input
//! ends only the stream that sent it: STOP_SENDING with a protocol error
//! code on the agent's half, the acks of every batch read before it, then
//! FIN on the relay's half; other streams and connections carry on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use horizon_shared::codec::{self, FrameError};
use horizon_shared::proto::{
    BatchAck, Durability, GoAway, RejectReason, Rejection, RelayFrame, agent_frame, error_code,
    relay_frame,
};
use horizon_shared::tls::peer_identity;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::budget::NodeBudget;
use crate::handshake::Ticket;
use crate::ingest::{BatchOutcome, ByteBudget, StreamDictionary, process_batch};
use crate::metrics::{StreamErrorKind, Throttle};
use crate::server::Shared;
use crate::sink::{Receipt, SinkError};

mod frames;

use frames::{FrameBudget, Frames};

/// Decrements a gauge when dropped.
struct GaugeGuard(prometheus_client::metrics::gauge::Gauge);

impl GaugeGuard {
    fn new(g: &prometheus_client::metrics::gauge::Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Runs one handshake, within `server.handshake_timeout_secs` and until
/// evicted; then checks the node identity and takes one of the
/// `server.max_connections` slots, and serves the connection. A handshake
/// dropped here (timed out, evicted, relay stopping) is closed by quinn,
/// which then forgets it.
pub(crate) async fn handle(incoming: quinn::Incoming, shared: Arc<Shared>, ticket: Ticket) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            shared.metrics.connection_refused("handshake");
            debug!(%remote, error = %e, "handshake could not start");
            return;
        }
    };
    let handshake = tokio::time::timeout(shared.settings.handshake_timeout, connecting);
    let conn = tokio::select! {
        r = handshake => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                shared.metrics.connection_refused(refusal_reason(&e));
                if let Some(suppressed) = shared.handshake_log.allow() {
                    warn!(%remote, error = %e, suppressed, "handshake failed (client certificate missing, from an unknown CA or expired?)");
                }
                return;
            }
            Err(_) => {
                shared.metrics.handshakes_timed_out.inc();
                debug!(%remote, "handshake timed out");
                return;
            }
        },
        // Counted where the eviction was decided.
        () = ticket.evicted() => {
            debug!(%remote, "half-open handshake evicted for a newer one");
            return;
        }
        () = shared.drain.cancelled() => {
            shared.metrics.handshake_refused("shutting_down");
            return;
        }
    };
    drop(ticket);
    let node = match peer_identity(&conn) {
        Ok(n) => n,
        Err(e) => {
            shared.metrics.connection_refused("identity");
            warn!(%remote, error = %e, "closing connection: no usable node identity");
            conn.close(
                error_code::PROTOCOL_VIOLATION.into(),
                b"client certificate carries no node identity",
            );
            return;
        }
    };
    // Only now, authenticated, does the connection take a slot.
    let Ok(permit) = shared.connection_slots.clone().try_acquire_owned() else {
        crate::server::refuse_at_limit(&shared, remote);
        conn.close(
            error_code::SERVER_BUSY.into(),
            b"relay at server.max_connections",
        );
        return;
    };
    let span = info_span!("node", node = %node);
    serve(conn, node, shared, permit).instrument(span).await;
}

async fn serve(
    conn: quinn::Connection,
    node: String,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
) {
    shared.metrics.connections_accepted.inc();
    let _active = GaugeGuard::new(&shared.metrics.connections_active);
    let _open = shared.open.register(&node, &conn);
    let budget = shared.budgets.node(&node);
    let slots = Arc::new(Semaphore::new(shared.settings.max_in_flight_per_connection));
    // The connection's streams share one dictionary byte budget, and one
    // budget for the frames they are reading.
    let dictionary = Arc::new(ByteBudget::new(shared.settings.dictionary.per_connection));
    let frame_budget = FrameBudget {
        connection: Arc::new(Semaphore::new(shared.settings.frame_buffer.per_connection)),
        total: shared.frame_bytes.clone(),
        gauge: shared.metrics.frame_buffer_bytes.clone(),
    };
    debug!("connected");
    let streams = TaskTracker::new();
    loop {
        tokio::select! {
            s = conn.accept_bi() => match s {
                Ok((send, recv)) => {
                    let span = info_span!("stream", id = %send.id());
                    let (shared, budget, slots, dictionary) =
                        (shared.clone(), budget.clone(), slots.clone(), dictionary.clone());
                    let frames = Frames::new(recv, shared.settings.max_frame_bytes, shared.settings.frame_read_timeout, frame_budget.clone());
                    streams.spawn(async move {
                        if let Err(e) = handle_stream(send, frames, &shared, &budget, slots, dictionary).await {
                            info!(error = %e, "stream ended with an error");
                        }
                    }.instrument(span));
                }
                Err(e) => {
                    match e {
                        quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed => debug!("closed by the agent"),
                        quinn::ConnectionError::TimedOut => info!("connection idle timeout"),
                        other => info!(error = %other, "connection lost"),
                    }
                    break;
                }
            },
            () = shared.drain.cancelled() => break,
        }
    }
    streams.close();
    streams.wait().await;
    if shared.drain.is_cancelled() {
        conn.close(error_code::SHUTTING_DOWN.into(), b"relay shutting down");
    }
}

/// The `connections_refused` reason of a failed handshake: `revoked` when
/// the TLS alert was certificate_revoked (a CRL), else `handshake`.
fn refusal_reason(e: &quinn::ConnectionError) -> &'static str {
    /// TLS alert certificate_revoked (RFC 8446 §6.2).
    const CERTIFICATE_REVOKED_ALERT: u8 = 44;
    match e {
        quinn::ConnectionError::TransportError(t)
            if t.code == quinn::TransportErrorCode::crypto(CERTIFICATE_REVOKED_ALERT) =>
        {
            "revoked"
        }
        _ => "handshake",
    }
}

/// Why a stream ended early.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("writing to the stream failed: {0}")]
    Write(#[from] quinn::WriteError),
}

/// One of a connection's in-flight slots, held from a batch's admission
/// until its ack is written.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _gauge: GaugeGuard,
}

/// A slot reserved before the stream's next frame is read, so that a
/// decoded frame never waits for one.
struct Reserved {
    permit: OwnedSemaphorePermit,
    waited: Duration,
}

impl Reserved {
    /// Waits for a slot while the connection is at its limit (`None` only
    /// if the semaphore was closed, which the relay never does).
    async fn take(slots: &Arc<Semaphore>) -> Option<Self> {
        let (permit, waited) = match slots.clone().try_acquire_owned() {
            Ok(p) => (p, Duration::ZERO),
            Err(_) => {
                let t = Instant::now();
                let p = slots.clone().acquire_owned().await.ok()?;
                (p, t.elapsed())
            }
        };
        Some(Self { permit, waited })
    }

    /// Admits a batch that has been read into this slot; returns the slot
    /// and the time waited for it.
    fn admit(self, slots: &Semaphore, shared: &Shared) -> (Slot, Duration) {
        let limit = shared.settings.max_in_flight_per_connection;
        let held = limit.saturating_sub(slots.available_permits());
        shared.metrics.connection_in_flight.observe(held as f64);
        if !self.waited.is_zero() {
            shared.metrics.throttled(Throttle::InFlight, self.waited);
        }
        let slot = Slot {
            _permit: self.permit,
            _gauge: GaugeGuard::new(&shared.metrics.in_flight_batches),
        };
        (slot, self.waited)
    }
}

/// What the reader half asks the writer half to send, in order.
enum Out {
    Ack {
        outcome: BatchOutcome,
        receipt: Receipt,
        started: Instant,
        slot: Slot,
    },
    GoAway,
    Reset(u32),
}

async fn handle_stream(
    send: quinn::SendStream,
    frames: Frames,
    shared: &Shared,
    budget: &NodeBudget,
    slots: Arc<Semaphore>,
    dictionary: Arc<ByteBudget>,
) -> Result<(), StreamError> {
    let _active = GaugeGuard::new(&shared.metrics.streams_active);
    // Room for every slot plus a GoAway and a reset: acks never wait here.
    let (tx, rx) = mpsc::channel(shared.settings.max_in_flight_per_connection + 2);
    let (read, write) = tokio::join!(
        read_batches(frames, tx, shared, budget, &slots, dictionary),
        write_acks(send, rx, shared)
    );
    read?;
    write?;
    Ok(())
}

/// Reads, validates and hands over batches, in order.
async fn read_batches(
    mut reader: Frames,
    tx: mpsc::Sender<Out>,
    shared: &Shared,
    budget: &NodeBudget,
    slots: &Arc<Semaphore>,
    dictionary: Arc<ByteBudget>,
) -> Result<(), StreamError> {
    let mut dict = StreamDictionary::bounded(
        shared.settings.max_series_per_stream,
        shared.settings.dictionary.per_stream,
        dictionary,
        shared.dictionary_bytes.clone(),
    );
    let mut draining = false;
    let mut deadline = std::pin::pin!(tokio::time::sleep(std::time::Duration::from_secs(
        86_400 * 365
    )));
    // The in-flight slot of the next batch, taken before it is read; waits
    // here while the connection has its limit of unacked batches.
    let Some(mut reserved) = Reserved::take(slots).await else {
        return Ok(());
    };
    loop {
        let next = tokio::select! {
            f = reader.next() => f,
            () = shared.drain.cancelled(), if !draining => {
                // Ask the agent to finish; keep acking what it already sent.
                draining = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + shared.settings.drain_grace);
                if tx.send(Out::GoAway).await.is_err() {
                    return Ok(());
                }
                continue;
            }
            () = &mut deadline => {
                let _ = tx.send(Out::Reset(error_code::SHUTTING_DOWN)).await;
                return Ok(());
            }
        };
        let frames::Frame {
            frame,
            held,
            waited: buffer_wait,
        } = match next {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => {
                let (kind, code) = match &e {
                    FrameError::TooLarge { .. } => {
                        (StreamErrorKind::FrameTooLarge, error_code::FRAME_TOO_LARGE)
                    }
                    FrameError::Empty | FrameError::Malformed(_) => {
                        (StreamErrorKind::MalformedFrame, error_code::MALFORMED_FRAME)
                    }
                    FrameError::Truncated { .. } => {
                        (StreamErrorKind::TruncatedFrame, error_code::MALFORMED_FRAME)
                    }
                    FrameError::Stalled { .. } => {
                        (StreamErrorKind::FrameTimeout, error_code::FRAME_TIMEOUT)
                    }
                    // The agent reset the stream or the connection went away.
                    FrameError::Io(_) => {
                        debug!(error = %e, "stream closed by the agent");
                        return Ok(());
                    }
                };
                shared.metrics.stream_error(kind, 1);
                let _ = reader.recv_mut().stop(code.into());
                let _ = tx.send(Out::Reset(code)).await;
                return Err(e.into());
            }
        };
        let Some(agent_frame::Kind::Batch(batch)) = frame.kind else {
            // A frame kind from a newer protocol revision: skip it.
            shared
                .metrics
                .stream_error(StreamErrorKind::UnknownFrame, 1);
            debug!("skipped a frame of unknown kind");
            continue;
        };
        if !buffer_wait.is_zero() {
            shared.metrics.throttled(Throttle::FrameBuffer, buffer_wait);
        }
        let started = Instant::now();
        let (slot, in_flight_wait) = reserved.admit(slots, shared);
        let now_secs = shared.budgets.now();
        let mut outcome = process_batch(
            batch,
            &mut dict,
            &shared.budgets,
            budget,
            &shared.limits,
            horizon_shared::clock::unix_nanos_now(),
            now_secs,
        );
        // The frame is decoded and processed: its bytes go back to the budgets.
        drop(held);
        if outcome.rejects.cardinality() > 0 {
            let warning = shared.budgets.lock(budget).take_warning(now_secs, 60);
            if let Some(w) = warning {
                warn!(
                    rejected_points = w.rejected,
                    live_series = w.live,
                    limit = w.limit,
                    example = outcome.cardinality_example.as_deref().unwrap_or(""),
                    "series budget exceeded: new series refused (existing series keep flowing)"
                );
            }
        }
        // Waits here while the sink queue is full: backpressure.
        let (receipt, queue_wait) = shared
            .pipeline
            .submit(budget.node(), std::mem::take(&mut outcome.accepted))
            .await;
        if !queue_wait.is_zero() {
            shared.metrics.throttled(Throttle::SinkQueue, queue_wait);
        }
        outcome.ack.in_flight_wait_ms = millis(in_flight_wait);
        outcome.ack.queue_wait_ms = millis(queue_wait);
        if tx
            .send(Out::Ack {
                outcome,
                receipt,
                started,
                slot,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
        let Some(next) = Reserved::take(slots).await else {
            return Ok(());
        };
        reserved = next;
    }
}

/// Writes acks in batch order, each once its points are stored (durable
/// mode) or at once (received mode).
async fn write_acks(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Out>,
    shared: &Shared,
) -> Result<(), StreamError> {
    let mut out = BytesMut::with_capacity(256);
    let durable = shared.pipeline.durable();
    while let Some(msg) = rx.recv().await {
        out.clear();
        // The batch's in-flight slot, freed once its ack is written.
        let mut _slot = None;
        let frame = match msg {
            Out::Reset(code) if code == error_code::SHUTTING_DOWN => {
                let _ = send.reset(code.into());
                return Ok(());
            }
            Out::Reset(_) => {
                // Bad input: the reader stopped the agent's half with the
                // code (STOP_SENDING). Every ack before this one is written;
                // finishing (not resetting) our half delivers them, where a
                // RESET_STREAM would discard those not yet sent.
                let _ = send.finish();
                return Ok(());
            }
            Out::GoAway => RelayFrame {
                kind: Some(relay_frame::Kind::GoAway(GoAway {
                    reason: "relay shutting down".into(),
                })),
            },
            Out::Ack {
                mut outcome,
                receipt,
                started,
                slot,
            } => {
                _slot = Some(slot);
                match receipt.wait().await {
                    Ok(()) if durable => outcome.ack.durability = Durability::Durable as i32,
                    Ok(()) => {}
                    Err(e) => refuse_accepted(&mut outcome.ack, &e),
                }
                shared
                    .metrics
                    .record_batch(&outcome, started.elapsed().as_secs_f64());
                RelayFrame {
                    kind: Some(relay_frame::Kind::Ack(outcome.ack)),
                }
            }
        };
        codec::encode(&frame, &mut out);
        if let Err(e) = send.write_all(&out).await {
            count_unacked(rx, shared).await;
            return Err(e.into());
        }
    }
    let _ = send.finish();
    Ok(())
}

/// The agent is gone (it will resend elsewhere what was not acked), but the
/// batches it is owed acks for reached the sinks all the same: count them
/// as their acks would have, so that the relay's counts add up with what
/// the sinks were given.
async fn count_unacked(mut rx: mpsc::Receiver<Out>, shared: &Shared) {
    while let Some(msg) = rx.recv().await {
        if let Out::Ack {
            mut outcome,
            receipt,
            started,
            slot,
        } = msg
        {
            if let Err(e) = receipt.wait().await {
                refuse_accepted(&mut outcome.ack, &e);
            }
            shared
                .metrics
                .record_batch(&outcome, started.elapsed().as_secs_f64());
            drop(slot);
        }
    }
}

/// A wait in whole milliseconds, rounded up so that any wait shows.
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u32::MAX)
}

/// Turns the accepted points of an ack into retryable OVERLOADED rejections.
fn refuse_accepted(ack: &mut BatchAck, e: &SinkError) {
    if ack.accepted == 0 {
        return;
    }
    ack.rejections.push(Rejection {
        reason: RejectReason::Overloaded as i32,
        count: ack.accepted,
        message: format!("not stored ({e}); resend the batch"),
    });
    ack.rejected += ack.accepted;
    ack.accepted = 0;
}
