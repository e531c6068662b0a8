//! One agent connection: handshake, node identity, its slot (a free one,
//! or its node's oldest connection's at `server.max_connections_per_node`,
//! see `crate::open`), and its streams.
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
//! bounded in bytes per connection, per node and relay-wide, and must keep
//! a minimum rate ([`frames`]). Bad input
//! ends only the stream that sent it: STOP_SENDING with a protocol error
//! code on the agent's half, the acks of every batch read before it, then
//! FIN on the relay's half; other streams and connections carry on.
//!
//! Here: the handshake, the connection and the stream joining its halves;
//! `slots.rs`: the in-flight slots; `reader.rs`: the reader half;
//! `acks.rs`: the writer half; `frames.rs`: frames read within the byte
//! budgets; `failed.rs`: why a handshake failed.

use std::sync::Arc;

use horizon_shared::codec::FrameError;
use horizon_shared::proto::error_code;
use horizon_shared::tls::peer_identity;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::budget::NodeBudget;
use crate::handshake::Ticket;
use crate::ingest::ByteBudget;
use crate::open::{Admitted, AtLimit, Registered};
use crate::state::Shared;

mod acks;
mod failed;
mod frames;
mod reader;
mod slots;

use acks::write_acks;
use failed::Failed;
use frames::{FrameBudget, Frames};
use reader::read_batches;
use slots::GaugeGuard;

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
            shared.metrics.connections.refused("handshake");
            debug!(%remote, error = %e, "handshake could not start");
            return;
        }
    };
    let handshake = tokio::time::timeout(shared.settings.server.handshake_timeout, connecting);
    let began = std::time::Instant::now();
    let _timed = TimeOnDrop(began, &shared.metrics.connections.handshake_seconds);
    let conn = tokio::select! {
        r = handshake => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let failed = Failed::of(&e);
                match failed.refusal_reason() {
                    Some(reason) => {
                        shared.metrics.connections.refused(reason);
                        if let Some(suppressed) = shared.handshake_log.allow() {
                            warn!(%remote, error = %e, suppressed, "{}", failed.hint());
                        }
                    }
                    // Expected by the hundred in a connect storm: counted, and
                    // logged at debug only.
                    None => {
                        shared.metrics.connections.handshakes_abandoned.inc();
                        debug!(%remote, error = %e, "{}", failed.hint());
                    }
                }
                return;
            }
            Err(_) => {
                shared.metrics.connections.handshakes_timed_out.inc();
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
            shared.metrics.connections.handshake_refused("shutting_down");
            return;
        }
    };
    drop(ticket);
    drop(_timed);
    let node = match peer_identity(&conn) {
        Ok(n) => n,
        Err(e) => {
            shared.metrics.connections.refused("identity");
            warn!(%remote, error = %e, "closing connection: no usable node identity");
            conn.close(
                error_code::PROTOCOL_VIOLATION.into(),
                b"client certificate carries no node identity",
            );
            return;
        }
    };
    // Only now, authenticated, does the connection take a slot: a free one,
    // or its node's oldest connection's if the node is at its cap.
    let registered = match shared.open.admit(&node, &conn, &shared.connection_slots) {
        Ok(Admitted::Free(r)) => r,
        Ok(Admitted::Replacing(r, oldest)) => {
            replace(&shared, &node, &oldest);
            r
        }
        Err(AtLimit) => {
            shared.refuse_at_limit(remote);
            conn.close(
                error_code::SERVER_BUSY.into(),
                b"relay at server.max_connections",
            );
            return;
        }
    };
    let span = info_span!("node", node = %node);
    serve(conn, node, shared, registered).instrument(span).await;
}

/// Observes the time since its start in a histogram when dropped, however
/// the handshake it times ends.
struct TimeOnDrop<'a>(
    std::time::Instant,
    &'a prometheus_client::metrics::histogram::Histogram,
);

impl Drop for TimeOnDrop<'_> {
    fn drop(&mut self) {
        self.1.observe(self.0.elapsed().as_secs_f64());
    }
}

/// Closes `oldest`, replaced by a newer connection of the same node at
/// `server.max_connections_per_node`, and counts it.
fn replace(shared: &Shared, node: &str, oldest: &quinn::Connection) {
    oldest.close(
        error_code::CONNECTION_REPLACED.into(),
        b"replaced by a newer connection of this node (server.max_connections_per_node)",
    );
    shared.metrics.connections.replaced("per_node_cap");
    if let Some(suppressed) = shared.replaced_log.allow() {
        info!(
            %node,
            replaced = %oldest.remote_address(),
            max_connections_per_node = shared.settings.server.max_connections_per_node,
            suppressed,
            "node at server.max_connections_per_node: its oldest connection is replaced by its newest"
        );
    }
}

async fn serve(conn: quinn::Connection, node: String, shared: Arc<Shared>, open: Registered) {
    shared.metrics.connections.accepted.inc();
    let _active = GaugeGuard::new(&shared.metrics.connections.active);
    let budget = shared.budgets.node(&node);
    let slots = Arc::new(Semaphore::new(
        shared.settings.server.max_in_flight_per_connection,
    ));
    // The connection's streams share one dictionary byte budget, and one
    // budget for the frames they are reading, within their node's share.
    let dictionary = Arc::new(ByteBudget::new(
        shared.settings.limits.dictionary.per_connection,
    ));
    let frame_budget = FrameBudget {
        connection: Arc::new(Semaphore::new(
            shared.settings.limits.frame_buffer.per_connection,
        )),
        node: open.frame_bytes.clone(),
        total: shared.frame_bytes.clone(),
        gauge: shared.metrics.streams.frame_buffer_bytes.clone(),
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
                    let frames = Frames::new(recv, shared.settings.limits.max_frame_bytes, shared.settings.limits.frame_rate, frame_budget.clone());
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

/// Why a stream ended early.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    /// A frame could not be read.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// An ack could not be written.
    #[error("writing to the stream failed: {0}")]
    Write(#[from] quinn::WriteError),
}

/// Serves one stream: its reader and its ack writer, joined.
async fn handle_stream(
    send: quinn::SendStream,
    frames: Frames,
    shared: &Shared,
    budget: &NodeBudget,
    slots: Arc<Semaphore>,
    dictionary: Arc<ByteBudget>,
) -> Result<(), StreamError> {
    let _active = GaugeGuard::new(&shared.metrics.streams.active);
    // Room for every slot plus a GoAway and a reset: acks never wait here.
    let (tx, rx) = mpsc::channel(shared.settings.server.max_in_flight_per_connection + 2);
    let (read, write) = tokio::join!(
        read_batches(frames, tx, shared, budget, &slots, dictionary),
        write_acks(send, rx, shared)
    );
    read?;
    write?;
    Ok(())
}
