//! The hand-off from streams to the sinks: [`Pipeline::submit`] takes a
//! batch's accepted points, hands them to InfluxDB without waiting and to
//! the micro-batcher through a bounded queue, and returns a [`Receipt`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use tokio::sync::{mpsc, oneshot};

use super::{SinkMetrics, StoreHealth, batcher, influx};
use crate::config::Settings;
use crate::ingest::AcceptedPoint;
use crate::log_limit::LogLimiter;
use crate::shutdown::{Phase, Shutdown};

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

/// Why the sinks could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The InfluxDB writer could not be set up.
    #[error(transparent)]
    Influx(#[from] influx::InfluxError),
}

#[derive(Debug)]
pub(crate) struct Submission {
    pub(super) node: Arc<str>,
    pub(super) points: Vec<AcceptedPoint>,
    pub(super) received_at: i64,
    pub(super) done: Option<oneshot::Sender<Result<(), SinkError>>>,
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

/// The hand-off from streams to the sinks.
#[derive(Debug)]
pub struct Pipeline {
    parquet: mpsc::Sender<Submission>,
    influx: Option<influx::InfluxHandle>,
    durable: bool,
    metrics: Arc<SinkMetrics>,
    health: Arc<StoreHealth>,
}

impl Pipeline {
    /// Starts the sink tasks, registered with `shutdown` in its
    /// [`Phase::Sinks`]: once [`Phase::Connections`] starts (drain) the
    /// batcher flushes without waiting for the age limit; once
    /// [`Phase::Sinks`] starts, both sinks write what they hold and stop
    /// (aborted at `server.drain_flush_secs`).
    pub fn start(
        settings: &Settings,
        store: Arc<dyn ObjectStore>,
        metrics: Arc<SinkMetrics>,
        shutdown: &Shutdown,
    ) -> Result<Self, StartError> {
        let closing = shutdown.signal(Phase::Sinks);
        let health = Arc::new(StoreHealth::default());
        let (tx, rx) = mpsc::channel(settings.backpressure_threshold);
        let boot_ms = horizon_shared::clock::unix_nanos_now() / 1_000_000;
        let influx = match &settings.influxdb {
            Some(s) => {
                let (handle, writer) = influx::start(s.clone(), metrics.clone(), closing.clone())?;
                shutdown.spawn(Phase::Sinks, "InfluxDB writer", writer);
                Some(handle)
            }
            None => None,
        };
        let batcher = batcher::Batcher {
            rx,
            settings: settings.parquet.clone(),
            store,
            relay_id: settings.relay_id.clone(),
            boot_ms,
            seq: 0,
            metrics: metrics.clone(),
            draining: shutdown.signal(Phase::Connections),
            closing,
            rows: Vec::new(),
            waiters: Vec::new(),
            oldest: None,
            bytes: 0,
            health: health.clone(),
            error_log: LogLimiter::new(Duration::from_secs(10)),
        };
        shutdown.spawn(Phase::Sinks, "Parquet micro-batcher", batcher.run());
        Ok(Self {
            parquet: tx,
            influx,
            durable: settings.durable_acks,
            metrics,
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
        let received_at = horizon_shared::clock::unix_nanos_now();
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
}
