//! The micro-batcher: collects accepted points, and flushes them to the
//! object store as one Parquet object per event hour when the buffer reaches
//! `parquet.flush_rows` rows, about `parquet.flush_bytes` bytes, or
//! `parquet.rotation_interval_secs` of age. Points of hours before the
//! previous one (an agent replaying its spool) go to one late object per
//! flush, whatever hours they span, so a flush writes at most four objects:
//! the late one, the previous, the current and (clock skew) the next hour.
//!
//! A flush that fails is retried with backoff, for as long as it takes;
//! meanwhile the batcher takes no new submissions, so its bounded queue
//! fills and the streams stop being read (QUIC flow control then pushes back
//! on the agents). Durable acks of a flush are released only when every
//! object of the flush is stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use horizon_shared::layout::{Hour, late_object_key, raw_object_key};
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::{Row, SinkError, SinkMetrics, StoreHealth, Submission};
use crate::config::ParquetSettings;
use crate::log_limit::LogLimiter;
use crate::retry::{Backoff, retry};

/// Waits between attempts to store an object: 100 ms, doubling, at most 10 s.
const PUT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

/// An object that could not be stored while the relay was closing.
#[derive(Debug, thiserror::Error)]
#[error("object store write of {key} failed {attempts} times while closing: {source}")]
pub(super) struct PutError {
    key: String,
    attempts: u32,
    #[source]
    source: object_store::Error,
}

pub(super) struct Batcher {
    pub(super) rx: mpsc::Receiver<Submission>,
    pub(super) settings: ParquetSettings,
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) relay_id: String,
    pub(super) boot_ms: i64,
    pub(super) seq: u64,
    pub(super) metrics: Arc<SinkMetrics>,
    /// Shutdown has reached the drain phase: flush whatever arrives
    /// without waiting for age.
    pub(super) draining: CancellationToken,
    /// Shutdown has reached the sink-flush phase: final flush and exit.
    pub(super) closing: CancellationToken,
    pub(super) rows: Vec<Row>,
    pub(super) waiters: Vec<oneshot::Sender<Result<(), SinkError>>>,
    pub(super) oldest: Option<Instant>,
    pub(super) bytes: usize,
    pub(super) health: Arc<StoreHealth>,
    pub(super) error_log: LogLimiter,
}

impl Batcher {
    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.closing.cancelled() => break,
                s = self.rx.recv() => match s {
                    Some(s) => {
                        self.add(s);
                        if self.rows.len() >= self.settings.flush_rows || self.bytes >= self.settings.flush_bytes {
                            self.flush().await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    let pending = !self.rows.is_empty() || !self.waiters.is_empty();
                    let due = self.oldest.is_some_and(|t| t.elapsed() >= self.settings.max_age)
                        || (pending && self.draining.is_cancelled());
                    if due {
                        self.flush().await;
                    }
                }
            }
        }
        // Final flush: refuse new submissions, take everything already queued.
        self.rx.close();
        while let Ok(s) = self.rx.try_recv() {
            self.add(s);
        }
        self.flush().await;
    }

    fn add(&mut self, s: Submission) {
        self.metrics
            .queue_batches
            .set(i64::try_from(self.rx.len()).unwrap_or(i64::MAX));
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        let received_at = s.received_at;
        self.bytes += s
            .points
            .iter()
            .map(|p| 48 + s.node.len() + p.series.text_bytes)
            .sum::<usize>();
        self.rows.extend(s.points.into_iter().map(|p| Row {
            node: s.node.clone(),
            series: p.series,
            time: p.time_unix_nano,
            value: p.value,
            received_at,
        }));
        if let Some(tx) = s.done {
            self.waiters.push(tx);
        }
        self.metrics.buffered_rows.set(self.rows.len() as i64);
    }

    async fn flush(&mut self) {
        self.oldest = None;
        self.bytes = 0;
        let rows = std::mem::take(&mut self.rows);
        let waiters = std::mem::take(&mut self.waiters);
        if rows.is_empty() {
            for w in waiters {
                let _ = w.send(Ok(()));
            }
            return;
        }
        let n = rows.len();
        let started = Instant::now();
        let (relay, zstd) = (self.relay_id.clone(), self.settings.zstd);
        // Points of hours before the previous one go to one late object.
        let now = Hour::of_nanos(horizon_shared::clock::unix_nanos_now());
        let late_before = Hour {
            start_unix_secs: now.start_unix_secs - 3600,
        };
        let encoded = tokio::task::spawn_blocking(move || {
            super::parquet::encode_flush(rows, &relay, zstd, late_before)
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
        for (hour, count, bytes) in late.into_iter().chain(hours) {
            self.seq += 1;
            let key = match hour {
                Some(hour) => raw_object_key(
                    &self.settings.raw_prefix,
                    hour,
                    &self.relay_id,
                    self.boot_ms,
                    self.seq,
                ),
                None => late_object_key(
                    &self.settings.raw_prefix,
                    &self.relay_id,
                    self.boot_ms,
                    self.seq,
                ),
            };
            if let Err(e) = self.put(&key, bytes.clone()).await {
                return self.fail(waiters, n, &e);
            }
            self.metrics.objects_written.inc();
            self.metrics.bytes_written.inc_by(bytes.len() as u64);
            self.metrics.points_written.inc_by(count as u64);
            debug!(
                key,
                rows = count,
                bytes = bytes.len(),
                late = hour.is_none(),
                "wrote raw object"
            );
        }
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.buffered_rows.set(0);
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
                let put = self.store.put_opts(&path, bytes.clone().into(), opts);
                async move {
                    match put.await {
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
                    warn!(key, attempt = f.attempt, error = %f.error, retry_in = ?f.retry_in, suppressed, "object store write failed; retrying (durable acks wait, streams will stop being read when the queue is full)");
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

    fn fail(
        &self,
        waiters: Vec<oneshot::Sender<Result<(), SinkError>>>,
        rows: usize,
        why: &dyn std::fmt::Display,
    ) {
        let why = why.to_string();
        error!(
            rows,
            batches = waiters.len(),
            error = %why,
            "micro-batch not stored; durable acks refused as OVERLOADED (agents resend)"
        );
        self.metrics.points_unstored.inc_by(rows as u64);
        self.metrics.buffered_rows.set(0);
        for w in waiters {
            let _ = w.send(Err(SinkError::Store(why.clone())));
        }
    }
}
