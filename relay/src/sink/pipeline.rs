//! The hand-off from streams to the sinks: [`Pipeline::submit`] takes a
//! batch's accepted points, hands them to InfluxDB without waiting and to
//! the node's micro-batcher through a bounded queue, and returns a
//! [`Receipt`].
//!
//! The queue is one bound shared by the batchers: a batch holds one of
//! `limits.backpressure_threshold` permits from its submission until its
//! batcher takes it in, so the bound does not grow with `parquet.batchers`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::warn;

use super::batcher::{AgeFlusher, Batcher, Handle, Oldest};
use super::error::{SinkError, StartError};
use super::flush::{Cut, Flusher};
use super::health::StoreHealth;
use super::influx;
use super::metrics::SinkMetrics;
use super::submission::Submission;
use crate::config::Settings;
use crate::ingest::AcceptedPoint;
use crate::log_limit::LogLimiter;
use crate::shutdown::{Phase, Shutdown};

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

/// The batcher of `node`, among `n`: the same for the relay's life.
fn shard(node: &str, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.hash(&mut h);
    (h.finish() % n as u64) as usize
}

/// The hand-off from streams to the sinks.
#[derive(Debug)]
pub struct Pipeline {
    /// One queue per batcher; a node's batches always go to the same one.
    batchers: Vec<mpsc::UnboundedSender<Submission>>,
    /// Room in the queues (`limits.backpressure_threshold` batches in all).
    room: Arc<Semaphore>,
    influx: Option<influx::InfluxHandle>,
    durable: bool,
    metrics: Arc<SinkMetrics>,
    health: Arc<StoreHealth>,
}

impl Pipeline {
    /// Starts the sink tasks, registered with `shutdown` in its
    /// [`Phase::Sinks`]: once [`Phase::Connections`] starts (drain) the
    /// batchers flush without waiting for the age limit; once
    /// [`Phase::Sinks`] starts, both sinks write what they hold and stop
    /// (aborted at `server.drain_flush_secs`).
    pub fn start(
        settings: &Settings,
        store: Arc<dyn ObjectStore>,
        metrics: Arc<SinkMetrics>,
        shutdown: &Shutdown,
    ) -> Result<Self, StartError> {
        let closing = shutdown.signal(Phase::Sinks);
        let draining = shutdown.signal(Phase::Connections);
        let health = Arc::new(StoreHealth::default());
        let p = &settings.parquet;
        let influx = match &settings.influxdb {
            Some(s) => {
                let (handle, writer) = influx::start(s.clone(), metrics.clone(), closing.clone())?;
                shutdown.spawn(Phase::Sinks, "InfluxDB writer", writer);
                Some(handle)
            }
            None => None,
        };
        let store: Arc<dyn ObjectStore> = if p.debug_put_latency.is_zero() {
            store
        } else {
            warn!(
                latency = ?p.debug_put_latency,
                "parquet.debug_put_latency_ms is set: every object-store PUT is delayed (benchmarks only)"
            );
            Arc::new(object_store::throttle::ThrottledStore::new(
                store,
                object_store::throttle::ThrottleConfig {
                    wait_put_per_call: p.debug_put_latency,
                    ..Default::default()
                },
            ))
        };
        let flusher = Arc::new(Flusher {
            store,
            settings: p.clone(),
            relay_id: settings.server.relay_id.clone(),
            boot_ms: horizon_shared::clock::unix_nanos_now() / 1_000_000,
            seq: AtomicU64::new(0),
            slots: Arc::new(Semaphore::new(p.batchers + p.max_concurrent_puts)),
            puts: Semaphore::new(p.max_concurrent_puts),
            metrics: metrics.clone(),
            health: health.clone(),
            error_log: LogLimiter::new(Duration::from_secs(10)),
            closing: closing.clone(),
            shutdown: shutdown.clone(),
            label_sets: Arc::default(),
        });
        metrics.batchers.set(p.batchers as i64);
        let epoch = Instant::now();
        let mut senders = Vec::with_capacity(p.batchers);
        let mut handles = Vec::with_capacity(p.batchers);
        for i in 0..p.batchers {
            let (tx, rx) = mpsc::unbounded_channel();
            let (takes_tx, takes) = mpsc::channel(1);
            let oldest = Arc::new(Oldest::new(epoch));
            let batcher = Batcher {
                rx,
                takes,
                flusher: flusher.clone(),
                metrics: metrics.clone(),
                oldest: oldest.clone(),
                closing: closing.clone(),
                buf: Cut::default(),
            };
            shutdown.spawn(
                Phase::Sinks,
                format!("Parquet micro-batcher {i}"),
                batcher.run(),
            );
            senders.push(tx);
            handles.push(Handle {
                takes: takes_tx,
                oldest,
            });
        }
        let ager = AgeFlusher {
            batchers: handles,
            flusher,
            draining,
            closing,
        };
        shutdown.spawn(Phase::Sinks, "Parquet age flusher", ager.run());
        Ok(Self {
            batchers: senders,
            room: Arc::new(Semaphore::new(settings.limits.backpressure_threshold)),
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
        // Room in the queue first: waits here while it is full (backpressure).
        let mut waited = Duration::ZERO;
        let queued = match self.room.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let t = Instant::now();
                let p = self.room.clone().acquire_owned().await;
                waited = t.elapsed();
                match p {
                    Ok(p) => p,
                    Err(_) => return (Receipt::failed(SinkError::Stopped), waited),
                }
            }
        };
        let sub = Submission {
            node: node.clone(),
            points,
            received_at,
            done,
            queued,
        };
        let batcher = &self.batchers[shard(node, self.batchers.len())];
        // Counted before it is sent: the batcher counts it out as it takes it.
        self.metrics.queue_batches.inc();
        if batcher.send(sub).is_err() {
            self.metrics.queue_batches.dec();
            return (Receipt::failed(SinkError::Stopped), waited);
        }
        (receipt, waited)
    }
}
