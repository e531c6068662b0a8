//! Flushes: a cut of the batchers' rows is encoded (`parquet.rs`, on the
//! blocking pool) and stored, one object per event hour plus one for the
//! late hours, each with a create-only PUT retried with backoff until it is
//! stored. Then, and only then, the durable acks of the cut's batches are
//! released: each flush holds its own batches' receipts, so a flush that
//! completes before an earlier one acks only its own batches.
//!
//! Flushes run concurrently, each in its own task (registered with the
//! shutdown's sink phase): at most `batchers + parquet.max_concurrent_puts`
//! flushes hold a slot from their cut until their objects are stored, and
//! at most `parquet.max_concurrent_puts` PUT requests are in flight. A
//! batcher that needs a slot while all are taken stops taking submissions,
//! which fills the queue and pushes back on the streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use horizon_shared::layout::{Hour, late_object_key, raw_object_key};
use horizon_shared::raw::LabelSets;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::error::SinkError;
use super::health::StoreHealth;
use super::metrics::SinkMetrics;
use super::parquet::Run;
use crate::config::ParquetSettings;
use crate::ingest::AcceptedPoint;
use crate::log_limit::LogLimiter;
use crate::retry::{Backoff, retry};
use crate::shutdown::{Phase, Shutdown};

/// Waits between attempts to store an object: 100 ms, doubling, at most 10 s.
const PUT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

/// Object sequence numbers reserved per cut, in the order rows leave their
/// batchers: a flush writes at most the late object and three hours
/// (previous, current, next); one that writes more takes further numbers
/// when it needs them. Cuts packed into one flush use the first cut's
/// numbers, so the counter has gaps; names stay unique per process.
const SEQ_PER_FLUSH: u64 = 4;

/// Where a durable ack waits.
pub(super) type Waiter = oneshot::Sender<Result<(), SinkError>>;

/// Rows taken out of one or more batchers, with the receipts of their batches.
#[derive(Debug, Default)]
pub(super) struct Cut {
    /// The points, a submission's after another's.
    pub(super) rows: Vec<AcceptedPoint>,
    /// Each submission's node and receive time, and where its points end
    /// in `rows`: kept once per submission, not once per point.
    pub(super) runs: Vec<Run>,
    pub(super) waiters: Vec<Waiter>,
    /// Estimated bytes of the rows (see `parquet.flush_bytes`).
    pub(super) bytes: usize,
    /// The object sequence numbers reserved when the rows were taken out of
    /// their batcher ([`Flusher::reserve`]), so that a node's later rows get
    /// later names even when cuts are dispatched out of order.
    pub(super) seq: Option<u64>,
}

impl Cut {
    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.waiters.is_empty()
    }

    /// Appends `other` (rows of other nodes, or later rows of the same nodes).
    pub(super) fn append(&mut self, mut other: Cut) {
        let offset = self.rows.len();
        if self.rows.is_empty() {
            std::mem::swap(&mut self.rows, &mut other.rows);
            std::mem::swap(&mut self.runs, &mut other.runs);
        } else {
            self.rows.append(&mut other.rows);
            self.runs.extend(other.runs.into_iter().map(|r| Run {
                end: r.end + offset,
                ..r
            }));
        }
        self.waiters.append(&mut other.waiters);
        self.bytes += other.bytes;
        self.seq = match (self.seq, other.seq) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// An object that could not be stored while the relay was closing.
#[derive(Debug, thiserror::Error)]
#[error("object store write of {key} failed {attempts} times while closing: {source}")]
pub(super) struct PutError {
    key: String,
    attempts: u32,
    #[source]
    source: object_store::Error,
}

/// What every flush shares: the store, the names, the bounds, the metrics.
pub(super) struct Flusher {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) settings: ParquetSettings,
    pub(super) relay_id: String,
    pub(super) boot_ms: i64,
    /// The next object sequence number.
    pub(super) seq: AtomicU64,
    /// Flushes in flight (from cut to stored).
    pub(super) slots: Arc<Semaphore>,
    /// PUT requests in flight.
    pub(super) puts: Semaphore,
    pub(super) metrics: Arc<SinkMetrics>,
    pub(super) health: Arc<StoreHealth>,
    pub(super) error_log: LogLimiter,
    /// Shutdown has reached the sink-flush phase: failing PUTs give up.
    pub(super) closing: CancellationToken,
    pub(super) shutdown: Shutdown,
    /// The label sets of the series the relay has stored, coded once per
    /// series (`horizon_shared::raw::LabelSets`), shared by every flush.
    pub(super) label_sets: Arc<std::sync::Mutex<LabelSets>>,
}

impl Flusher {
    /// Waits for a flush slot.
    pub(super) async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the flush slots are never closed"))
    }

    /// Reserves the object sequence numbers of one flush.
    pub(super) fn reserve(&self) -> u64 {
        self.seq.fetch_add(SEQ_PER_FLUSH, Ordering::Relaxed) + 1
    }

    /// Starts storing `cut` in its own task, which holds `slot` until the
    /// cut's objects are stored (or given up on while closing).
    pub(super) fn dispatch(self: &Arc<Self>, cut: Cut, slot: OwnedSemaphorePermit) {
        if cut.rows.is_empty() {
            for w in cut.waiters {
                let _ = w.send(Ok(()));
            }
            return;
        }
        let first_seq = cut.seq.unwrap_or_else(|| self.reserve());
        let me = self.clone();
        self.metrics.flushes_in_flight.inc();
        self.metrics.flushing_rows.inc_by(cut.rows.len() as i64);
        self.shutdown
            .spawn(Phase::Sinks, "Parquet flush", async move {
                let rows = cut.rows.len() as i64;
                me.clone().flush(cut, first_seq).await;
                me.metrics.flushing_rows.dec_by(rows);
                me.metrics.flushes_in_flight.dec();
                drop(slot);
            });
    }

    async fn flush(self: Arc<Self>, cut: Cut, first_seq: u64) {
        let Cut {
            rows,
            runs,
            waiters,
            ..
        } = cut;
        let n = rows.len();
        let started = Instant::now();
        let (relay, zstd) = (self.relay_id.clone(), self.settings.zstd);
        // Points of hours before the previous one go to one late object.
        let now = Hour::of_nanos(horizon_shared::clock::unix_nanos_now());
        let late_before = Hour {
            start_unix_secs: now.start_unix_secs - 3600,
        };
        let sets = self.label_sets.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            super::parquet::encode_flush(rows, &runs, &sets, &relay, zstd, late_before)
        })
        .await;
        let objects = match encoded {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return self.fail(waiters, n, &e),
            Err(e) => return self.fail(waiters, n, &format_args!("encoder task failed: {e}")),
        };
        let late = objects.late.map(|(count, bytes)| (None, count, bytes));
        let hours = objects
            .hours
            .into_iter()
            .map(|(hour, count, bytes)| (Some(hour), count, bytes));
        // The flush's objects go up together; its acks wait for all of them.
        let mut puts = tokio::task::JoinSet::new();
        for (i, (hour, count, bytes)) in late.into_iter().chain(hours).enumerate() {
            let seq = match u64::try_from(i) {
                Ok(i) if i < SEQ_PER_FLUSH => first_seq + i,
                _ => self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            };
            let key = match hour {
                Some(hour) => raw_object_key(
                    &self.settings.raw_prefix,
                    hour,
                    &self.relay_id,
                    self.boot_ms,
                    seq,
                ),
                None => {
                    late_object_key(&self.settings.raw_prefix, &self.relay_id, self.boot_ms, seq)
                }
            };
            let me = self.clone();
            puts.spawn(async move {
                me.put(&key, bytes.clone()).await?;
                me.metrics.objects_written.inc();
                me.metrics.bytes_written.inc_by(bytes.len() as u64);
                me.metrics.points_written.inc_by(count as u64);
                debug!(
                    key,
                    rows = count,
                    bytes = bytes.len(),
                    late = hour.is_none(),
                    "wrote raw object"
                );
                Ok::<(), PutError>(())
            });
        }
        while let Some(done) = puts.join_next().await {
            let stored = done.unwrap_or_else(|e| {
                Err(PutError {
                    key: "(task)".into(),
                    attempts: 0,
                    source: object_store::Error::Generic {
                        store: "relay",
                        source: Box::new(e),
                    },
                })
            });
            if let Err(e) = stored {
                // The other objects of the flush stop with it (dropping the set).
                return self.fail(waiters, n, &e);
            }
        }
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        for w in waiters {
            let _ = w.send(Ok(()));
        }
    }

    /// Puts one object, retrying with backoff until it is stored or the
    /// relay is closing.
    async fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<(), PutError> {
        let path = Path::from(key);
        let stored = retry(
            PUT_BACKOFF,
            &self.closing,
            |attempt| {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                let (path, bytes) = (&path, bytes.clone());
                async move {
                    // One request at a time per permit; a failed attempt lets
                    // go of its permit while it backs off.
                    let _permit = self.puts.acquire().await;
                    self.metrics.puts_in_flight.inc();
                    let put = self.store.put_opts(path, bytes.into(), opts).await;
                    self.metrics.puts_in_flight.dec();
                    match put {
                        Ok(_) => Ok(()),
                        // Names are unique per relay process: an existing object is
                        // this one, stored by an attempt whose response was lost.
                        Err(object_store::Error::AlreadyExists { .. }) if attempt > 1 => Ok(()),
                        Err(e) => Err(e),
                    }
                }
            },
            |f| {
                self.health.failed();
                self.metrics.put_errors.inc();
                if let Some(suppressed) = self.error_log.allow() {
                    warn!(key, attempt = f.attempt, error = %f.error, retry_in = ?f.retry_in, suppressed, "object store write failed; retrying (durable acks wait, streams will stop being read when the flushes in flight reach their bound)");
                }
            },
        )
        .await;
        match stored {
            Ok(()) => {
                self.health.succeeded();
                Ok(())
            }
            Err((source, attempts)) => Err(PutError {
                key: key.to_owned(),
                attempts,
                source,
            }),
        }
    }

    fn fail(&self, waiters: Vec<Waiter>, rows: usize, why: &dyn std::fmt::Display) {
        let why = why.to_string();
        error!(
            rows,
            batches = waiters.len(),
            error = %why,
            "micro-batch not stored; durable acks refused as OVERLOADED (agents resend)"
        );
        self.metrics.points_unstored.inc_by(rows as u64);
        for w in waiters {
            let _ = w.send(Err(SinkError::Store(why.clone())));
        }
    }
}
