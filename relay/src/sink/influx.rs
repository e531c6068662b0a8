//! The InfluxDB sink: line protocol, gzip, batched, to the v2 write API
//! (`/api/v2/write`, org, bucket, `Token` auth) or the v1 API (`/write`, db,
//! rp, basic auth).
//!
//! It never slows the Parquet path: points are handed over without waiting,
//! held in a buffer bounded by `influxdb.max_buffered_points`, and written
//! by up to `influxdb.max_concurrent_writes` requests at once, each of at
//! most `influxdb.batch_points` points and `influxdb.batch_bytes` bytes,
//! retried with jittered backoff. A 429 or 503 with `Retry-After` pauses
//! every request until then (capped at [`MAX_RETRY_AFTER`]): the database
//! asked for room, so none of them presses on. Bodies are gzip-compressed
//! at level 1 unless `influxdb.gzip` is off. Points that do not fit in the
//! buffer are dropped for InfluxDB only (they still reach Parquet), counted
//! in `horizon_relay_influxdb_dropped_points_total` and logged; so points are
//! dropped only when the database falls behind for longer than the buffer
//! lasts.
//!
//! Lines are formatted by the stream that hands the points over (so on
//! every core the streams run on), from each series' escaped measurement
//! and tags, kept with the series ([`SeriesLine`]); compression runs in the
//! request's task, so requests in flight compress in parallel.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::lineproto::{Escaping, SeriesLine, node_tag, write_line};
use super::metrics::SinkMetrics;
use crate::config::{InfluxApi, InfluxSettings};
use crate::ingest::AcceptedPoint;
use crate::log_limit::LogLimiter;
use crate::retry::{Backoff, retry};

/// Waits between attempts to write: 200 ms, doubling, at most 10 s.
const WRITE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// The longest pause a `Retry-After` can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

struct Chunk {
    lines: String,
    points: usize,
}

/// The producer side, used by streams.
#[derive(Debug)]
pub struct InfluxHandle {
    tx: mpsc::UnboundedSender<Chunk>,
    buffered: Arc<AtomicUsize>,
    max: usize,
    escaping: Escaping,
    metrics: Arc<SinkMetrics>,
    drop_log: LogLimiter,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chunk({} points)", self.points)
    }
}

impl InfluxHandle {
    /// Hands points over for writing; drops (and counts) them if the buffer is full.
    pub fn submit(&self, node: &str, points: &[AcceptedPoint]) {
        let n = points.len();
        if n == 0 {
            return;
        }
        if self.buffered.fetch_add(n, Ordering::AcqRel) + n > self.max {
            self.buffered.fetch_sub(n, Ordering::AcqRel);
            self.metrics.influx_dropped.inc_by(n as u64);
            if let Some(suppressed) = self.drop_log.allow() {
                warn!(
                    points = n,
                    buffered = self.buffered.load(Ordering::Relaxed),
                    max = self.max,
                    suppressed,
                    "InfluxDB buffer full: points dropped for InfluxDB (they are still written to Parquet)"
                );
            }
            return;
        }
        let tag = node_tag(self.escaping, node);
        let mut lines = String::new();
        for (i, p) in points.iter().enumerate() {
            let cached = p.series.line_protocol.get_or_init(|| {
                Box::new(SeriesLine::new(
                    self.escaping,
                    &p.series.metric,
                    &p.series.labels,
                ))
            });
            if cached.escaping() == self.escaping {
                write_line(&mut lines, cached, &tag, p.value, p.time_unix_nano);
            } else {
                // Only if a series were shared with a sink of another
                // escaping; the relay has one sink.
                let own = SeriesLine::new(self.escaping, &p.series.metric, &p.series.labels);
                write_line(&mut lines, &own, &tag, p.value, p.time_unix_nano);
            }
            if i == 0 {
                // The first line tells the size of the rest, near enough.
                lines.reserve((lines.len() + 8) * (n - 1));
            }
        }
        if self.tx.send(Chunk { lines, points: n }).is_err() {
            self.buffered.fetch_sub(n, Ordering::AcqRel);
            self.metrics.influx_dropped.inc_by(n as u64);
        }
        self.metrics
            .influx_buffered
            .set(self.buffered.load(Ordering::Relaxed) as i64);
    }
}

/// Why the InfluxDB sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// The HTTP client could not be built (TLS roots, proxy settings).
    #[error("cannot build the InfluxDB HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Sets up the writer; returns the handle and the writer's task, to spawn.
/// The writer writes what it holds and ends once `closing` fires.
pub fn start(
    settings: InfluxSettings,
    metrics: Arc<SinkMetrics>,
    closing: CancellationToken,
) -> Result<(InfluxHandle, impl Future<Output = ()> + Send + 'static), InfluxError> {
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()
        .map_err(InfluxError::Client)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let buffered = Arc::new(AtomicUsize::new(0));
    let handle = InfluxHandle {
        tx,
        buffered: buffered.clone(),
        max: settings.max_buffered_points,
        escaping: match settings.api {
            InfluxApi::V2 { .. } => Escaping::V2,
            InfluxApi::V1 { .. } => Escaping::V1,
        },
        metrics: metrics.clone(),
        drop_log: LogLimiter::new(Duration::from_secs(10)),
    };
    let writer = Arc::new(Writer {
        client,
        slots: Arc::new(Semaphore::new(settings.max_concurrent_writes)),
        settings,
        metrics,
        buffered,
        closing,
        error_log: LogLimiter::new(Duration::from_secs(10)),
        paused_until: std::sync::Mutex::new(None),
    });
    Ok((handle, writer.run(rx)))
}

struct Writer {
    client: reqwest::Client,
    settings: InfluxSettings,
    metrics: Arc<SinkMetrics>,
    buffered: Arc<AtomicUsize>,
    closing: CancellationToken,
    error_log: LogLimiter,
    /// Requests in flight (`influxdb.max_concurrent_writes`).
    slots: Arc<Semaphore>,
    /// No request goes out before this (the database's `Retry-After`).
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

enum Outcome {
    Written,
    Rejected(String),
    Retry(String),
}

/// One request's worth of lines being gathered, as the streams handed them
/// over (joined only when the request is made).
#[derive(Default)]
struct Pending {
    chunks: Vec<String>,
    bytes: usize,
    points: usize,
    deadline: Option<tokio::time::Instant>,
}

impl Pending {
    fn add(&mut self, c: Chunk) {
        self.bytes += c.lines.len();
        self.points += c.points;
        self.chunks.push(c.lines);
    }
}

impl Writer {
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Chunk>) {
        let mut pending = Pending::default();
        let mut writes = JoinSet::new();
        loop {
            let deadline = pending.deadline;
            let wait = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.closing.cancelled() => break,
                Some(_) = writes.join_next(), if !writes.is_empty() => {}
                c = rx.recv() => match c {
                    Some(c) => {
                        pending.add(c);
                        pending.deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.settings.flush_interval);
                        if pending.points >= self.settings.batch_points
                            || pending.bytes >= self.settings.batch_bytes
                        {
                            self.dispatch(std::mem::take(&mut pending), &mut writes).await;
                        }
                    }
                    None => break,
                },
                () = wait => self.dispatch(std::mem::take(&mut pending), &mut writes).await,
            }
        }
        while let Ok(c) = rx.try_recv() {
            pending.add(c);
        }
        self.dispatch(pending, &mut writes).await;
        while writes.join_next().await.is_some() {}
    }

    /// Starts writing `pending` once one of the request slots is free
    /// (waiting meanwhile: lines keep arriving in the channel, bounded by
    /// the buffer's count).
    async fn dispatch(self: &Arc<Self>, pending: Pending, writes: &mut JoinSet<()>) {
        if pending.points == 0 {
            return;
        }
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let me = self.clone();
        writes.spawn(async move {
            me.write(pending.chunks, pending.bytes, pending.points)
                .await;
            drop(slot);
        });
    }

    /// Waits out a pause the database asked for.
    async fn wait_if_paused(&self) {
        let until = *self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = until {
            tokio::select! {
                () = tokio::time::sleep_until(t) => {}
                () = self.closing.cancelled() => {}
            }
        }
    }

    /// Pauses every request for `d` (at most [`MAX_RETRY_AFTER`]).
    fn pause(&self, d: Duration) {
        let until = tokio::time::Instant::now() + d.min(MAX_RETRY_AFTER);
        let mut p = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }

    /// Writes one request's worth, retrying until it succeeds, InfluxDB
    /// refuses it for good, or the relay is closing.
    async fn write(&self, chunks: Vec<String>, bytes: usize, points: usize) {
        if points == 0 {
            return;
        }
        let body = if self.settings.gzip {
            // Line protocol shrinks about tenfold.
            let mut e = GzEncoder::new(Vec::with_capacity(bytes / 8), Compression::fast());
            for c in &chunks {
                let _ = e.write_all(c.as_bytes());
            }
            e.finish().unwrap_or_default()
        } else {
            let mut b = Vec::with_capacity(bytes);
            for c in &chunks {
                b.extend_from_slice(c.as_bytes());
            }
            b
        };
        drop(chunks);
        let body = Bytes::from(body);
        let started = std::time::Instant::now();
        let written = retry(
            WRITE_BACKOFF,
            &self.closing,
            |_| {
                let post = async {
                    self.wait_if_paused().await;
                    self.post(body.clone()).await
                };
                async move {
                    match post.await {
                        Outcome::Written => Ok(Ok(())),
                        Outcome::Rejected(why) => Ok(Err(why)),
                        Outcome::Retry(why) => Err(why),
                    }
                }
            },
            |f| {
                self.metrics.influx_retries.inc();
                if f.giving_up {
                    return;
                }
                if let Some(suppressed) = self.error_log.allow() {
                    warn!(points, attempt = f.attempt, error = %f.error, retry_in = ?f.retry_in, buffered = self.buffered.load(Ordering::Relaxed), suppressed,
                        "InfluxDB write failed; retrying (Parquet path unaffected)");
                }
            },
        )
        .await;
        match written {
            Ok(Ok(())) => {
                self.metrics.influx_written.inc_by(points as u64);
                self.metrics
                    .influx_write_seconds
                    .observe(started.elapsed().as_secs_f64());
                debug!(points, "wrote to InfluxDB");
            }
            Ok(Err(why)) => {
                self.metrics.influx_rejected.inc_by(points as u64);
                error!(points, error = %why, "InfluxDB refused a write; these points are not retried (they are in Parquet)");
            }
            Err((why, _)) => {
                self.metrics.influx_dropped.inc_by(points as u64);
                error!(points, error = %why, "InfluxDB unavailable while closing: points dropped for InfluxDB");
            }
        }
        self.buffered.fetch_sub(points, Ordering::AcqRel);
        self.metrics
            .influx_buffered
            .set(self.buffered.load(Ordering::Relaxed) as i64);
    }

    async fn post(&self, body: Bytes) -> Outcome {
        let s = &self.settings;
        let req = match &s.api {
            InfluxApi::V2 { org, bucket, token } => self
                .client
                .post(format!("{}/api/v2/write", s.url))
                .query(&[
                    ("org", org.as_str()),
                    ("bucket", bucket.as_str()),
                    ("precision", "ns"),
                ])
                .header("Authorization", format!("Token {token}")),
            InfluxApi::V1 {
                database,
                retention_policy,
                auth,
            } => {
                let mut q = vec![("db", database.as_str()), ("precision", "ns")];
                if let Some(rp) = retention_policy {
                    q.push(("rp", rp.as_str()));
                }
                let r = self.client.post(format!("{}/write", s.url)).query(&q);
                match auth {
                    Some((u, p)) => r.basic_auth(u, Some(p)),
                    None => r,
                }
            }
        };
        let req = if s.gzip {
            req.header("Content-Encoding", "gzip")
        } else {
            req
        };
        let resp = req
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => Outcome::Written,
            Ok(r) => {
                let status = r.status();
                let retry_after = (status.as_u16() == 429 || status.as_u16() == 503)
                    .then(|| retry_after(r.headers()))
                    .flatten();
                if let Some(d) = retry_after {
                    self.pause(d);
                }
                let text: String = r
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                let why = match retry_after {
                    Some(d) => format!("HTTP {status} (Retry-After {d:?}): {text}"),
                    None => format!("HTTP {status}: {text}"),
                };
                if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 408 {
                    Outcome::Rejected(why)
                } else {
                    Outcome::Retry(why)
                }
            }
            Err(e) => Outcome::Retry(format!("{e}")),
        }
    }
}

/// A `Retry-After` header in seconds (the form InfluxDB and proxies send;
/// an HTTP date is ignored and the backoff applies).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
