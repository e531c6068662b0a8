//! The agent client: connects to a relay with a node certificate, pipelines
//! a window of unacked batches on one stream, and after any connection loss
//! reconnects and resends every batch not yet acked (at-least-once).
//!
//! ```no_run
//! # async fn demo(tls: horizon_shared::tls::TlsMaterial) -> Result<(), Box<dyn std::error::Error>> {
//! use horizon_shared::client::{Batch, Client, ClientConfig, Point};
//! let client = Client::connect(ClientConfig::new("relay.example:5001", "relay.example", tls)).await?;
//! let util = client.series("gpu_utilization_percent", &[("gpu", "0")])?;
//! let pending = client.send(Batch { points: vec![Point::now(util, 97.0)] }).await?;
//! let acked = pending.await?;
//! println!("{} accepted, {} rejected", acked.ack.accepted, acked.ack.rejected);
//! # Ok(()) }
//! ```

mod driver;
mod encoder;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

pub use encoder::{StreamEncoder, absolute_times};

use crate::model::{InvalidSeries, SeriesLimits, canonicalize, validate_series};
use crate::proto::{BatchAck, Label};
use crate::tls::TlsMaterial;

/// Client-side errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The relay address could not be resolved or parsed.
    #[error("cannot resolve relay address {0}")]
    Resolve(String),
    /// The QUIC endpoint or TLS configuration could not be set up.
    #[error("client setup failed: {0}")]
    Setup(String),
    /// Connecting failed (handshake refused, timeout, unreachable).
    #[error("connect to {addr} failed: {reason}")]
    Connect {
        /// The relay address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The connection or stream broke; pending batches will be resent.
    #[error("connection lost: {0}")]
    Connection(String),
    /// The batch is larger than the configured limits.
    #[error("batch of {points} points exceeds the limit of {max}")]
    BatchTooLarge {
        /// Points in the batch.
        points: usize,
        /// The limit.
        max: usize,
    },
    /// The client was closed before the batch was acked.
    #[error("client closed before the batch was acked")]
    Closed,
}

/// A series registered with the client; its value is also its wire id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u32);

/// A registered series: metric name and canonical labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesSpec {
    /// Metric name.
    pub metric: String,
    /// Labels sorted by key.
    pub labels: Vec<(String, String)>,
}

/// The series a client knows, numbered densely from 0.
#[derive(Debug, Default)]
pub struct SeriesRegistry {
    series: Vec<SeriesSpec>,
    index: HashMap<SeriesSpec, SeriesId>,
    limits: SeriesLimits,
}

impl SeriesRegistry {
    /// Registers (or finds) a series after validating it with the default
    /// limits, so a malformed series fails here rather than at the relay.
    pub fn register(
        &mut self,
        metric: &str,
        labels: &[(&str, &str)],
    ) -> Result<SeriesId, InvalidSeries> {
        let mut proto: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect();
        canonicalize(&mut proto);
        validate_series(metric, &proto, &self.limits)?;
        Ok(self.register_unchecked(
            metric,
            proto.into_iter().map(|l| (l.key, l.value)).collect(),
        ))
    }

    /// Registers a series without validation (tests of the relay's checks).
    pub fn register_unchecked(&mut self, metric: &str, labels: Vec<(String, String)>) -> SeriesId {
        let spec = SeriesSpec {
            metric: metric.to_owned(),
            labels,
        };
        if let Some(id) = self.index.get(&spec) {
            return *id;
        }
        let id = SeriesId(u32::try_from(self.series.len()).unwrap_or(u32::MAX));
        self.series.push(spec.clone());
        self.index.insert(spec, id);
        id
    }

    /// The series behind an id.
    ///
    /// # Panics
    /// When `id` was not issued by this registry.
    pub fn get(&self, id: SeriesId) -> &SeriesSpec {
        &self.series[id.0 as usize]
    }

    /// Number of registered series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is registered.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// One point of a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Its series.
    pub series: SeriesId,
    /// Unix time in nanoseconds.
    pub time_unix_nano: i64,
    /// The value.
    pub value: f64,
}

impl Point {
    /// A point at the given time.
    pub fn new(series: SeriesId, time_unix_nano: i64, value: f64) -> Self {
        Self {
            series,
            time_unix_nano,
            value,
        }
    }

    /// A point stamped with the current time.
    pub fn now(series: SeriesId, value: f64) -> Self {
        Self::new(series, crate::clock::unix_nanos_now(), value)
    }
}

/// A batch of points, sent and acked as one unit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// The points, in any order.
    pub points: Vec<Point>,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Relay (or load balancer) address, `host:port`.
    pub addr: String,
    /// Name the relay's certificate must carry.
    pub server_name: String,
    /// Our certificate, key, and the CA that issued the relay's certificate.
    pub tls: TlsMaterial,
    /// Batches sent and not yet acked, at most.
    pub window: usize,
    /// Points per batch, at most (the relay's `limits.max_batch_size`).
    pub max_batch_points: usize,
    /// Largest frame the relay accepts.
    pub max_frame_bytes: usize,
    /// QUIC keep-alive interval (keeps load-balancer flows alive). The
    /// client pings at least every third of `liveness_timeout` as well.
    pub keep_alive: Duration,
    /// QUIC idle timeout, the transport's own last resort.
    pub idle_timeout: Duration,
    /// The relay is taken for gone when nothing at all, not even the QUIC
    /// acknowledgement of a ping, has come from it for this long: the
    /// client reconnects (from a fresh UDP port) and resends. A live relay
    /// answers every ping within a round trip, however slow its acks are.
    /// On a path slower than that (eight round trips, as quinn estimates
    /// them, acknowledgement delays included) the longer time applies.
    pub liveness_timeout: Duration,
    /// A batch unacked for this long, while the relay still answers at the
    /// transport, makes the client reconnect and resend (a relay that is
    /// alive but stuck). Durable acks legitimately take up to the relay's
    /// flush age, so keep it well above that.
    pub ack_timeout: Duration,
    /// A handshake not finished in this long is a failed attempt.
    pub connect_timeout: Duration,
    /// Longest pause between reconnect attempts. Pauses start at 250 ms
    /// and double, each drawn at random from its upper half (the first
    /// from 0 to 250 ms), so that agents of a failed relay spread out.
    pub max_backoff: Duration,
}

impl ClientConfig {
    /// Settings with the defaults of `docs/protocol.md`.
    pub fn new(addr: impl Into<String>, server_name: impl Into<String>, tls: TlsMaterial) -> Self {
        Self {
            addr: addr.into(),
            server_name: server_name.into(),
            tls,
            window: 512,
            max_batch_points: 1000,
            max_frame_bytes: crate::codec::DEFAULT_MAX_FRAME_BYTES,
            keep_alive: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            liveness_timeout: Duration::from_secs(3),
            ack_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(4),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// An acked batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Acked {
    /// The relay's ack.
    pub ack: BatchAck,
    /// From the last time the batch was written to the stream to its ack.
    pub latency: Duration,
    /// How many times the batch was sent (1 unless it was resent after a reconnect).
    pub attempts: u32,
}

/// Connection statistics of a client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Successful connections (the first one included).
    pub connects: u64,
    /// Failed connection attempts and connections lost.
    pub connection_errors: u64,
    /// Batch sends beyond the first (resends after reconnects).
    pub resends: u64,
}

#[derive(Debug)]
struct InFlight {
    batch: Arc<Batch>,
    reply: Option<oneshot::Sender<Result<Acked, ClientError>>>,
    sent_at: Option<Instant>,
    attempts: u32,
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug, Default)]
struct Counters {
    connects: AtomicU64,
    connection_errors: AtomicU64,
    resends: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    registry: RwLock<SeriesRegistry>,
    pending: Mutex<BTreeMap<u64, InFlight>>,
    next_seq: AtomicU64,
    window: Arc<Semaphore>,
    /// Wakes the stream writer when batches are queued.
    wake: Notify,
    /// Signalled when the pending set becomes empty.
    idle: Notify,
    counters: Counters,
    closing: CancellationToken,
}

impl Inner {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, InFlight>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection to the relay fleet. Dropping it closes the connection.
#[derive(Debug)]
pub struct Client {
    inner: Arc<Inner>,
    max_batch_points: usize,
    driver: Option<tokio::task::JoinHandle<()>>,
    endpoint: quinn::Endpoint,
}

impl Client {
    /// Connects (the first connection is awaited, so a wrong address or a
    /// refused handshake is reported here) and starts the background driver
    /// that keeps the connection up.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let inner = Arc::new(Inner {
            registry: RwLock::new(SeriesRegistry::default()),
            pending: Mutex::new(BTreeMap::new()),
            next_seq: AtomicU64::new(1),
            window: Arc::new(Semaphore::new(config.window.max(1))),
            wake: Notify::new(),
            idle: Notify::new(),
            counters: Counters::default(),
            closing: CancellationToken::new(),
        });
        let max_batch_points = config.max_batch_points;
        let driver = driver::Driver::new(config, inner.clone())?;
        let endpoint = driver.endpoint();
        let first = driver.connect().await?;
        inner.counters.connects.fetch_add(1, Ordering::Relaxed);
        let driver = tokio::spawn(driver.run(first));
        Ok(Self {
            inner,
            max_batch_points,
            driver: Some(driver),
            endpoint,
        })
    }

    /// Registers a series (validated locally) and returns its id.
    pub fn series(&self, metric: &str, labels: &[(&str, &str)]) -> Result<SeriesId, InvalidSeries> {
        self.inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register(metric, labels)
    }

    /// Registers a series without validating it (for testing relays).
    pub fn series_unchecked(&self, metric: &str, labels: &[(&str, &str)]) -> SeriesId {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register_unchecked(metric, labels)
    }

    /// Queues a batch for sending, waiting while the window of unacked
    /// batches is full. The returned future resolves with the batch's ack;
    /// the batch is resent after reconnects until it is acked or the client
    /// is closed.
    pub async fn send(&self, batch: Batch) -> Result<PendingAck, ClientError> {
        if batch.points.len() > self.max_batch_points {
            return Err(ClientError::BatchTooLarge {
                points: batch.points.len(),
                max: self.max_batch_points,
            });
        }
        if self.inner.closing.is_cancelled() {
            return Err(ClientError::Closed);
        }
        let permit = self
            .inner
            .window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Closed)?;
        let (tx, rx) = oneshot::channel();
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        self.inner.lock_pending().insert(
            seq,
            InFlight {
                batch: Arc::new(batch),
                reply: Some(tx),
                sent_at: None,
                attempts: 0,
                _permit: permit,
            },
        );
        self.inner.wake.notify_one();
        Ok(PendingAck { sequence: seq, rx })
    }

    /// Batches sent or queued and not yet acked.
    pub fn pending(&self) -> usize {
        self.inner.lock_pending().len()
    }

    /// Waits until every queued batch is acked, at most `timeout`. Returns
    /// whether everything was acked.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.inner.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.inner.lock_pending().is_empty() {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Connection statistics so far.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        ClientStats {
            connects: c.connects.load(Ordering::Relaxed),
            connection_errors: c.connection_errors.load(Ordering::Relaxed),
            resends: c.resends.load(Ordering::Relaxed),
        }
    }

    /// Moves the client to a new UDP socket (a new local port), as a NAT
    /// rebinding or a change of network interface would. The open
    /// connection migrates to the new address: the relay validates the new
    /// path and the stream carries on, if the packets still reach the same
    /// relay (a load balancer that routes by connection ID keeps them
    /// there; one that hashes the address and port may not, and then the
    /// client reconnects and resends as after any connection loss).
    /// Returns the new local address.
    pub fn rebind(&self) -> std::io::Result<std::net::SocketAddr> {
        driver::fresh_port(&self.endpoint)
    }

    /// Closes the connection. Batches not yet acked fail with [`ClientError::Closed`].
    pub async fn close(mut self) {
        self.inner.closing.cancel();
        self.inner.wake.notify_one();
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.inner.closing.cancel();
        self.inner.wake.notify_one();
    }
}

/// The ack of one queued batch, as a future.
#[derive(Debug)]
pub struct PendingAck {
    sequence: u64,
    rx: oneshot::Receiver<Result<Acked, ClientError>>,
}

impl PendingAck {
    /// The batch's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

impl Future for PendingAck {
    type Output = Result<Acked, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}
