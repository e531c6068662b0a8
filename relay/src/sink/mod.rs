//! Where accepted points go: Parquet micro-batches in an object store and,
//! if configured, InfluxDB.
//!
//! Streams hand accepted points to the [`Pipeline`]:
//! - the Parquet path goes through a bounded queue (`limits.backpressure_threshold`
//!   batches) to the micro-batcher; a full queue makes [`Pipeline::submit`]
//!   wait, which stops the stream from reading, which lets QUIC flow control
//!   push back on the agent;
//! - the InfluxDB path never waits (see [`influx`]).
//!
//! In `durable` ack mode the stream acks a batch only once the [`Receipt`]
//! reports the Parquet object stored.

mod batcher;
pub mod influx;
pub mod lineproto;
mod parquet;

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Settings;
use crate::ingest::{AcceptedPoint, SeriesEntry};
use crate::ratelimit::RateLimited;

/// Why a batch could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The object store write failed for good (only while closing).
    #[error("object store write failed: {0}")]
    Store(String),
    /// The relay stopped before the batch was stored.
    #[error("relay stopped before the batch was stored")]
    Stopped,
}

/// One accepted point on its way to Parquet.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) node: Arc<str>,
    pub(crate) series: Arc<SeriesEntry>,
    pub(crate) time: i64,
    pub(crate) value: f64,
    pub(crate) received_at: i64,
}

#[derive(Debug)]
pub(crate) struct Submission {
    node: Arc<str>,
    points: Vec<AcceptedPoint>,
    received_at: i64,
    done: Option<oneshot::Sender<Result<(), SinkError>>>,
}

/// Tells when a submitted batch is stored (durable mode) or at once (received mode).
#[derive(Debug)]
pub struct Receipt(Option<oneshot::Receiver<Result<(), SinkError>>>);

impl Receipt {
    /// A receipt that is already complete.
    pub fn ready() -> Self {
        Self(None)
    }

    /// A receipt that has already failed.
    fn failed(e: SinkError) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(e));
        Self(Some(rx))
    }

    /// Waits for the outcome.
    pub async fn wait(self) -> Result<(), SinkError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or(Err(SinkError::Stopped)),
        }
    }
}

/// Metrics of the sinks.
#[derive(Debug)]
pub struct SinkMetrics {
    /// Batches queued for the Parquet sink.
    pub queue_batches: Gauge,
    /// Rows in the micro-batch being built.
    pub buffered_rows: Gauge,
    /// Parquet objects stored.
    pub objects_written: Counter,
    /// Bytes of Parquet stored.
    pub bytes_written: Counter,
    /// Rows stored.
    pub rows_written: Counter,
    /// Rows that could not be stored (relay closing with the store down).
    pub rows_failed: Counter,
    /// Failed object-store writes (each retried).
    pub put_errors: Counter,
    /// Time to encode and store one flush.
    pub flush_seconds: Histogram,
    /// Points written to InfluxDB.
    pub influx_written: Counter,
    /// Points dropped for InfluxDB (buffer full, or unavailable while closing).
    pub influx_dropped: Counter,
    /// Points InfluxDB refused (4xx).
    pub influx_rejected: Counter,
    /// Retried InfluxDB requests.
    pub influx_retries: Counter,
    /// Points waiting for InfluxDB.
    pub influx_buffered: Gauge,
    /// Time to write one InfluxDB request, retries included.
    pub influx_write_seconds: Histogram,
}

impl SinkMetrics {
    /// Fresh metrics, registered in `r`.
    pub fn new(r: &mut Registry) -> Self {
        let m = Self {
            queue_batches: Gauge::default(),
            buffered_rows: Gauge::default(),
            objects_written: Counter::default(),
            bytes_written: Counter::default(),
            rows_written: Counter::default(),
            rows_failed: Counter::default(),
            put_errors: Counter::default(),
            flush_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            influx_written: Counter::default(),
            influx_dropped: Counter::default(),
            influx_rejected: Counter::default(),
            influx_retries: Counter::default(),
            influx_buffered: Gauge::default(),
            influx_write_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        r.register(
            "sink_queue_batches",
            "Batches queued for the Parquet sink (backpressure at limits.backpressure_threshold)",
            m.queue_batches.clone(),
        );
        r.register(
            "sink_buffered_rows",
            "Rows in the micro-batch being built",
            m.buffered_rows.clone(),
        );
        r.register(
            "s3_objects_written",
            "Parquet objects stored in the object store",
            m.objects_written.clone(),
        );
        r.register(
            "s3_bytes_written",
            "Bytes of Parquet stored in the object store",
            m.bytes_written.clone(),
        );
        r.register(
            "points_written",
            "Points stored as Parquet rows",
            m.rows_written.clone(),
        );
        r.register(
            "points_unstored",
            "Accepted points that could not be stored (relay closing while the store was down)",
            m.rows_failed.clone(),
        );
        r.register(
            "s3_put_errors",
            "Failed object-store writes (each is retried)",
            m.put_errors.clone(),
        );
        r.register(
            "sink_flush_seconds",
            "Time to encode and store one micro-batch",
            m.flush_seconds.clone(),
        );
        r.register(
            "influxdb_written_points",
            "Points written to InfluxDB",
            m.influx_written.clone(),
        );
        r.register(
            "influxdb_dropped_points",
            "Points dropped for InfluxDB only: buffer full, or InfluxDB down while closing",
            m.influx_dropped.clone(),
        );
        r.register(
            "influxdb_rejected_points",
            "Points InfluxDB refused with a 4xx answer",
            m.influx_rejected.clone(),
        );
        r.register(
            "influxdb_retries",
            "InfluxDB write requests retried",
            m.influx_retries.clone(),
        );
        r.register(
            "influxdb_buffered_points",
            "Points waiting to be written to InfluxDB",
            m.influx_buffered.clone(),
        );
        r.register(
            "influxdb_write_seconds",
            "Time to write one InfluxDB request, retries included",
            m.influx_write_seconds.clone(),
        );
        m
    }
}

/// Whether object-store writes are failing, and since when.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failing_since: std::sync::Mutex<Option<Instant>>,
}

impl StoreHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.failing_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a failed write.
    pub fn failed(&self) {
        self.lock().get_or_insert_with(Instant::now);
    }

    /// Records a successful write.
    pub fn succeeded(&self) {
        *self.lock() = None;
    }

    /// How long writes have been failing without a success in between.
    pub fn failing_for(&self) -> Option<Duration> {
        self.lock().map(|t| t.elapsed())
    }
}

/// The hand-off from streams to the sinks.
#[derive(Debug)]
pub struct Pipeline {
    parquet: mpsc::Sender<Submission>,
    influx: Option<influx::InfluxHandle>,
    durable: bool,
    metrics: Arc<SinkMetrics>,
    closing: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    health: Arc<StoreHealth>,
}

impl Pipeline {
    /// Starts the sink tasks. `draining` is the relay's shutdown token: once
    /// it fires the batcher flushes without waiting for the age limit.
    pub fn start(
        settings: &Settings,
        store: Arc<dyn ObjectStore>,
        metrics: Arc<SinkMetrics>,
        draining: CancellationToken,
    ) -> Result<Self, String> {
        let closing = CancellationToken::new();
        let health = Arc::new(StoreHealth::default());
        let (tx, rx) = mpsc::channel(settings.backpressure_threshold);
        let boot_ms = horizon_shared::client::unix_nanos_now() / 1_000_000;
        let batcher = batcher::Batcher {
            rx,
            settings: settings.parquet.clone(),
            store,
            relay_id: settings.relay_id.clone(),
            boot_ms,
            seq: 0,
            metrics: metrics.clone(),
            draining,
            closing: closing.clone(),
            rows: Vec::new(),
            waiters: Vec::new(),
            oldest: None,
            bytes: 0,
            health: health.clone(),
            error_log: RateLimited::new(Duration::from_secs(10)),
        };
        let mut tasks = vec![tokio::spawn(batcher.run())];
        let influx = match &settings.influxdb {
            Some(s) => {
                let (handle, task) = influx::start(s.clone(), metrics.clone(), closing.clone())?;
                tasks.push(task);
                Some(handle)
            }
            None => None,
        };
        Ok(Self {
            parquet: tx,
            influx,
            durable: settings.durable_acks,
            metrics,
            closing,
            tasks: Mutex::new(tasks),
            health,
        })
    }

    /// The object store's health, for readiness.
    pub fn store_health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }

    /// Whether acks wait for the object store.
    pub fn durable(&self) -> bool {
        self.durable
    }

    /// Hands over the accepted points of one batch. Waits while the Parquet
    /// queue is full (backpressure); returns the receipt and how long it
    /// waited for room (zero when there was room).
    pub async fn submit(&self, node: &Arc<str>, points: Vec<AcceptedPoint>) -> (Receipt, Duration) {
        if points.is_empty() {
            return (Receipt::ready(), Duration::ZERO);
        }
        if let Some(influx) = &self.influx {
            influx.submit(node, &points);
        }
        let received_at = horizon_shared::client::unix_nanos_now();
        let (done, receipt) = if self.durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Receipt(Some(rx)))
        } else {
            (None, Receipt::ready())
        };
        let sub = Submission {
            node: node.clone(),
            points,
            received_at,
            done,
        };
        let mut waited = Duration::ZERO;
        let sent = match self.parquet.try_send(sub) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(sub)) => {
                let t = Instant::now();
                let sent = self.parquet.send(sub).await.map_err(drop);
                waited = t.elapsed();
                sent
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        };
        if sent.is_err() {
            return (Receipt::failed(SinkError::Stopped), waited);
        }
        // The queue's length now (the batcher sets it too as it takes batches).
        let queued = self.parquet.max_capacity() - self.parquet.capacity();
        self.metrics
            .queue_batches
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        (receipt, waited)
    }

    /// Flushes everything queued and stops the sink tasks, waiting at most
    /// `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        let started = Instant::now();
        self.closing.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().await);
        for t in tasks {
            let left = deadline.saturating_sub(started.elapsed());
            let abort = t.abort_handle();
            if tokio::time::timeout(left, t).await.is_err() {
                warn!(
                    ?deadline,
                    "sink did not finish flushing within the shutdown deadline"
                );
                abort.abort();
            }
        }
    }
}
