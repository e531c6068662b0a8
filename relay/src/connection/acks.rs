//! A stream's writer half: sends the acks of its batches in batch order,
//! each once its points are stored (durable mode) or at once (received
//! mode); a GoAway on drain; FIN after bad input, so the acks before it
//! still arrive.

use std::time::Instant;

use bytes::BytesMut;
use horizon_shared::codec;
use horizon_shared::proto::{
    BatchAck, Durability, GoAway, RejectReason, Rejection, RelayFrame, error_code, relay_frame,
};
use tokio::sync::mpsc;

use super::slots::Slot;
use crate::ingest::BatchOutcome;
use crate::sink::{Receipt, SinkError};
use crate::state::Shared;

/// What the reader half asks the writer half to send, in order.
pub(super) enum Out {
    /// A batch's ack, written once its receipt says it is stored.
    Ack {
        /// What became of the batch.
        outcome: BatchOutcome,
        /// Reports when the sinks stored its points.
        receipt: Receipt,
        /// When it was decoded.
        started: Instant,
        /// Its in-flight slot, freed once the ack is written.
        slot: Slot,
    },
    /// Tell the agent the relay is shutting down.
    GoAway,
    /// End the stream with this error code.
    Reset(u32),
}

/// Writes acks in batch order, each once its points are stored (durable
/// mode) or at once (received mode).
pub(super) async fn write_acks(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Out>,
    shared: &Shared,
) -> Result<(), quinn::WriteError> {
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
                    .streams
                    .record_batch(&outcome, started.elapsed().as_secs_f64());
                RelayFrame {
                    kind: Some(relay_frame::Kind::Ack(outcome.ack)),
                }
            }
        };
        codec::encode(&frame, &mut out);
        if let Err(e) = send.write_all(&out).await {
            count_unacked(rx, shared).await;
            return Err(e);
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
                .streams
                .record_batch(&outcome, started.elapsed().as_secs_f64());
            drop(slot);
        }
    }
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
