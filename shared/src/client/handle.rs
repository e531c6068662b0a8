//! The client as its user holds it: [`Client`] queues batches and hands
//! back each one's ack as a future ([`PendingAck`]); its driver task
//! (`driver.rs`) does the sending.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use super::batch::{Acked, Batch};
use super::config::{ClientConfig, ConnectionEvent};
use super::driver;
use super::error::ClientError;
use super::series::{SeriesId, SeriesRegistry};
use super::state::{Counters, InFlight, Inner};
use crate::model::InvalidSeries;
use crate::proto::MetricType;

/// Connection statistics of a client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Successful connections (the first one included).
    pub connects: u64,
    /// Failed connection attempts and connections lost.
    pub connection_errors: u64,
    /// Of those, connections lost: established (the relay confirmed the
    /// handshake), then ended by an error (the relay silent or gone, the
    /// stream or the connection failed).
    pub connections_lost: u64,
    /// Of those, connections given up because the relay was silent for
    /// `liveness_timeout` (nothing acknowledged, pings unanswered).
    pub silences: u64,
    /// Of the failed attempts, connections whose handshake completed on the
    /// client's side but that ended, or went silent, before the relay
    /// confirmed it (no HANDSHAKE_DONE): a relay busy with a connect storm
    /// that ended or never finished its side.
    pub unconfirmed: u64,
    /// Batch sends beyond the first (resends after reconnects).
    pub resends: u64,
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
        let events = config.events.clone();
        let emit = |e| events.iter().for_each(|h| h.emit(e));
        let first = async {
            let driver = driver::Driver::new(config, inner.clone())?;
            let first = driver.connect().await?;
            Ok::<_, ClientError>((driver, first))
        }
        .await;
        let (driver, first) = match first {
            Ok(d) => d,
            Err(e) => {
                emit(ConnectionEvent::ConnectFailed(e.connect_failure()));
                return Err(e);
            }
        };
        emit(ConnectionEvent::Connected);
        let endpoint = driver.endpoint();
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

    /// Registers a series of a known metric type (validated locally) and
    /// returns its id; its definitions on the wire carry the type.
    pub fn typed_series(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        metric_type: MetricType,
    ) -> Result<SeriesId, InvalidSeries> {
        self.inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register_typed(metric, labels, metric_type)
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
            connections_lost: c.connections_lost.load(Ordering::Relaxed),
            silences: c.silences.load(Ordering::Relaxed),
            unconfirmed: c.unconfirmed.load(Ordering::Relaxed),
            resends: c.resends.load(Ordering::Relaxed),
        }
    }

    /// Moves the client to a new UDP socket (a new local port), as a NAT
    /// rebinding or a change of network interface would. The open
    /// connection migrates to the new address: the relay validates the new
    /// path and the stream carries on, if the packets still reach the same
    /// relay (a load balancer that routes by connection ID keeps them
    /// there; one that hashes the address and port may not, and then the
    /// client reconnects and resends as after any connection loss). On an
    /// endpoint shared with other clients ([`ClientConfig::endpoint`]),
    /// every client on it moves. Returns the new local address.
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
