//! A stream's reader half: reads, validates and hands over batches strictly
//! in order (so the stream's series dictionary is applied in order), each in
//! an in-flight slot taken before it is read; on drain, asks the agent to go
//! away and keeps acking what it already sent for `server.drain_grace_secs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use horizon_shared::codec::FrameError;
use horizon_shared::proto::{agent_frame, error_code};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use super::acks::Out;
use super::frames::{self, Frames};
use super::slots::Reserved;
use crate::budget::NodeBudget;
use crate::ingest::{ByteBudget, StreamDictionary, process_batch};
use crate::metrics::{StreamErrorKind, Throttle};
use crate::state::Shared;

/// Reads, validates and hands over batches, in order.
pub(super) async fn read_batches(
    mut reader: Frames,
    tx: mpsc::Sender<Out>,
    shared: &Shared,
    budget: &NodeBudget,
    slots: &Arc<Semaphore>,
    dictionary: Arc<ByteBudget>,
) -> Result<(), FrameError> {
    let mut dict = StreamDictionary::bounded(
        shared.settings.limits.max_series_per_stream,
        shared.settings.limits.dictionary.per_stream,
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
                deadline.as_mut().reset(tokio::time::Instant::now() + shared.settings.server.drain_grace);
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
                shared.metrics.streams.error(kind, 1);
                let _ = reader.recv_mut().stop(code.into());
                let _ = tx.send(Out::Reset(code)).await;
                return Err(e);
            }
        };
        let Some(agent_frame::Kind::Batch(batch)) = frame.kind else {
            // A frame kind from a newer protocol revision: skip it.
            shared
                .metrics
                .streams
                .error(StreamErrorKind::UnknownFrame, 1);
            debug!("skipped a frame of unknown kind");
            continue;
        };
        if !buffer_wait.is_zero() {
            shared
                .metrics
                .flow
                .throttled(Throttle::FrameBuffer, buffer_wait);
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
            shared
                .metrics
                .flow
                .throttled(Throttle::SinkQueue, queue_wait);
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

/// A wait in whole milliseconds, rounded up so that any wait shows.
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u32::MAX)
}
