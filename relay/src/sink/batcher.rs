//! The micro-batchers: `parquet.batchers` of them, each collecting the
//! accepted points of its share of the nodes (a node always goes to the same
//! one, so its points stay in order), and the age flusher that cuts them all
//! together.
//!
//! - A batcher cuts its own rows into a flush once they reach
//!   `parquet.flush_rows` rows or about `parquet.flush_bytes` bytes. At high
//!   rates the batchers fill and flush in parallel.
//! - The age flusher watches the oldest buffered row of every batcher. Once
//!   it is `parquet.rotation_interval_secs` old (or at once while the relay
//!   drains), it takes the rows of *every* batcher and flushes them together,
//!   packed into as few flushes as `flush_rows`/`flush_bytes` allow: at low
//!   rates that is one flush (one object per hour) per interval, whatever
//!   the number of batchers.
//!
//! A cut needs a flush slot (`flush.rs`). While none is free, a full batcher
//! stops taking submissions; its queue fills and the streams stop being
//! read (QUIC flow control then pushes back on the agents). Each flush
//! releases the durable acks of its own batches once its objects are stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::flush::{Cut, Flusher};
use super::metrics::SinkMetrics;
use super::parquet::Run;
use super::submission::Submission;

/// How often the age flusher looks at the batchers' oldest rows.
const AGE_TICK: Duration = Duration::from_millis(50);

/// No row buffered (in a batcher's `oldest`).
const EMPTY: u64 = u64::MAX;

/// What the age flusher asks a batcher for: all its rows.
type Take = oneshot::Sender<Cut>;

/// When a batcher's oldest buffered row arrived, in nanoseconds since the
/// sink started, or [`EMPTY`]; read by the age flusher.
#[derive(Debug)]
pub(super) struct Oldest {
    epoch: Instant,
    nanos: AtomicU64,
}

impl Oldest {
    pub(super) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            nanos: AtomicU64::new(EMPTY),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(EMPTY - 1)
    }

    fn set_now(&self) {
        self.nanos.store(self.now(), Ordering::Relaxed);
    }

    fn clear(&self) {
        self.nanos.store(EMPTY, Ordering::Relaxed);
    }

    /// The age of the oldest row, if any.
    fn age(&self) -> Option<Duration> {
        match self.nanos.load(Ordering::Relaxed) {
            EMPTY => None,
            t => Some(Duration::from_nanos(self.now().saturating_sub(t))),
        }
    }
}

/// One micro-batcher: the rows of its nodes, not yet cut into a flush.
pub(super) struct Batcher {
    pub(super) rx: mpsc::UnboundedReceiver<Submission>,
    /// Requests of the age flusher.
    pub(super) takes: mpsc::Receiver<Take>,
    pub(super) flusher: Arc<Flusher>,
    pub(super) metrics: Arc<SinkMetrics>,
    pub(super) oldest: Arc<Oldest>,
    /// Shutdown has reached the sink-flush phase: final flush and exit.
    pub(super) closing: CancellationToken,
    pub(super) buf: Cut,
}

impl Batcher {
    pub(super) async fn run(mut self) {
        let (flush_rows, flush_bytes) = (
            self.flusher.settings.flush_rows,
            self.flusher.settings.flush_bytes,
        );
        loop {
            let full = self.buf.rows.len() >= flush_rows || self.buf.bytes >= flush_bytes;
            tokio::select! {
                biased;
                () = self.closing.cancelled() => break,
                Some(reply) = self.takes.recv() => {
                    let _ = reply.send(self.take());
                }
                // Full: wait for a flush slot, taking no submissions meanwhile
                // (but still giving the rows up to the age flusher if it asks).
                slot = self.flusher.slot(), if full => {
                    let cut = self.take();
                    self.flusher.dispatch(cut, slot);
                }
                s = self.rx.recv(), if !full => match s {
                    Some(s) => self.add(s),
                    None => break,
                },
            }
        }
        // Final flush: refuse new submissions, take everything already queued.
        self.rx.close();
        while let Ok(s) = self.rx.try_recv() {
            self.add(s);
        }
        let cut = self.take();
        if !cut.is_empty() {
            let slot = self.flusher.slot().await;
            self.flusher.dispatch(cut, slot);
        }
    }

    pub(super) fn add(&mut self, s: Submission) {
        // The batch leaves the queue (its permit goes back with `s._queued`).
        if self.buf.rows.is_empty() {
            self.oldest.set_now();
        }
        let received_at = s.received_at;
        let node = s.node;
        let before = self.buf.rows.len();
        self.buf.bytes += s
            .points
            .iter()
            .map(|p| 48 + node.len() + p.series.text_bytes)
            .sum::<usize>();
        let mut points = s.points;
        self.buf.rows.append(&mut points);
        self.buf.runs.push(Run {
            node,
            received_at,
            end: self.buf.rows.len(),
        });
        if let Some(tx) = s.done {
            self.buf.waiters.push(tx);
        }
        self.metrics
            .buffered_rows
            .inc_by((self.buf.rows.len() - before) as i64);
        drop(s.queued);
        self.metrics.queue_batches.dec();
    }

    fn take(&mut self) -> Cut {
        self.oldest.clear();
        self.metrics
            .buffered_rows
            .dec_by(self.buf.rows.len() as i64);
        let mut cut = std::mem::take(&mut self.buf);
        if !cut.rows.is_empty() {
            cut.seq = Some(self.flusher.reserve());
        }
        cut
    }
}

/// The age flusher's handle on one batcher.
pub(super) struct Handle {
    pub(super) takes: mpsc::Sender<Take>,
    pub(super) oldest: Arc<Oldest>,
}

/// Cuts every batcher once the oldest buffered row reaches the flush age.
pub(super) struct AgeFlusher {
    pub(super) batchers: Vec<Handle>,
    pub(super) flusher: Arc<Flusher>,
    /// Shutdown has reached the drain phase: flush whatever is buffered
    /// without waiting for age.
    pub(super) draining: CancellationToken,
    pub(super) closing: CancellationToken,
}

impl AgeFlusher {
    pub(super) async fn run(self) {
        let max_age = self.flusher.settings.max_age;
        let mut tick = tokio::time::interval(AGE_TICK.min(max_age));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.closing.cancelled() => break,
                _ = tick.tick() => {}
            }
            let oldest = self.batchers.iter().filter_map(|b| b.oldest.age()).max();
            let due = oldest.is_some_and(|age| age >= max_age || self.draining.is_cancelled());
            if !due {
                continue;
            }
            // A slot first (waiting here while every flush slot is taken), so
            // that the rows taken go out at once.
            let slot = tokio::select! {
                biased;
                () = self.closing.cancelled() => break,
                slot = self.flusher.slot() => slot,
            };
            let mut cuts = Vec::with_capacity(self.batchers.len());
            for b in &self.batchers {
                let (tx, rx) = oneshot::channel();
                if b.takes.send(tx).await.is_ok()
                    && let Ok(cut) = rx.await
                    && !cut.is_empty()
                {
                    cuts.push(cut);
                }
            }
            let mut slot = Some(slot);
            for cut in pack(cuts, &self.flusher.settings) {
                let slot = match slot.take() {
                    Some(s) => s,
                    None => self.flusher.slot().await,
                };
                self.flusher.dispatch(cut, slot);
            }
        }
    }
}

/// Packs cuts into as few flushes as `flush_rows` and `flush_bytes` allow
/// (a cut is never split; one larger than the limits is a flush of its own).
fn pack(cuts: Vec<Cut>, settings: &crate::config::ParquetSettings) -> Vec<Cut> {
    let mut out: Vec<Cut> = Vec::new();
    for cut in cuts {
        match out.last_mut() {
            Some(last)
                if last.rows.len() + cut.rows.len() <= settings.flush_rows
                    && last.bytes + cut.bytes <= settings.flush_bytes =>
            {
                last.append(cut);
            }
            _ => out.push(cut),
        }
    }
    out
}
