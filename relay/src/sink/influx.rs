//! The InfluxDB sink: line protocol, gzip, batched, to the v2 write API
//! (`/api/v2/write`, org, bucket, `Token` auth) or the v1 API (`/write`, db,
//! rp, basic auth).
//!
//! It never slows the Parquet path: points are handed over without waiting,
//! held in a buffer bounded by `influxdb.max_buffered_points`, and written
//! with retries. Points that do not fit in the buffer are dropped for
//! InfluxDB only (they still reach Parquet), counted in
//! `horizon_relay_influxdb_dropped_points_total` and logged.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::SinkMetrics;
use super::lineproto::{Escaping, write_point};
use crate::config::{InfluxApi, InfluxSettings};
use crate::ingest::AcceptedPoint;
use crate::log_limit::LogLimiter;
use crate::retry::{Backoff, retry};

/// Waits between attempts to write: 200 ms, doubling, at most 10 s.
const WRITE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

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
        let mut lines = String::with_capacity(n * 96);
        for p in points {
            write_point(
                &mut lines,
                self.escaping,
                &p.series.metric,
                node,
                &p.series.labels,
                p.value,
                p.time_unix_nano,
            );
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
pub(super) fn start(
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
    let writer = Writer {
        client,
        settings,
        metrics,
        buffered,
        closing,
        error_log: LogLimiter::new(Duration::from_secs(10)),
    };
    Ok((handle, writer.run(rx)))
}

struct Writer {
    client: reqwest::Client,
    settings: InfluxSettings,
    metrics: Arc<SinkMetrics>,
    buffered: Arc<AtomicUsize>,
    closing: CancellationToken,
    error_log: LogLimiter,
}

enum Outcome {
    Written,
    Rejected(String),
    Retry(String),
}

impl Writer {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Chunk>) {
        let mut body = String::new();
        let mut points = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let wait = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.closing.cancelled() => break,
                c = rx.recv() => match c {
                    Some(c) => {
                        body.push_str(&c.lines);
                        points += c.points;
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.settings.flush_interval);
                        if points >= self.settings.batch_points {
                            self.write(std::mem::take(&mut body), std::mem::take(&mut points)).await;
                            deadline = None;
                        }
                    }
                    None => break,
                },
                () = wait => {
                    self.write(std::mem::take(&mut body), std::mem::take(&mut points)).await;
                    deadline = None;
                }
            }
        }
        while let Ok(c) = rx.try_recv() {
            body.push_str(&c.lines);
            points += c.points;
        }
        self.write(body, points).await;
    }

    /// Writes one request's worth, retrying until it succeeds, InfluxDB
    /// refuses it for good, or the relay is closing.
    async fn write(&self, body: String, points: usize) {
        if points == 0 {
            return;
        }
        let gz = {
            let mut e = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            let _ = e.write_all(body.as_bytes());
            e.finish().unwrap_or_default()
        };
        let started = std::time::Instant::now();
        let written = retry(
            WRITE_BACKOFF,
            &self.closing,
            |_| {
                let post = self.post(gz.clone());
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

    async fn post(&self, gz: Vec<u8>) -> Outcome {
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
        let resp = req
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(gz)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => Outcome::Written,
            Ok(r) => {
                let status = r.status();
                let text: String = r
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                let why = format!("HTTP {status}: {text}");
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
