//! The state a [`Client`](super::Client) shares with its driver task: the
//! series, the batches in flight, the window, the wake-ups, the counters.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use super::batch::{Acked, Batch};
use super::error::ClientError;
use super::series::SeriesRegistry;

/// A batch queued or sent and not yet acked.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) batch: Arc<Batch>,
    pub(super) reply: Option<oneshot::Sender<Result<Acked, ClientError>>>,
    pub(super) sent_at: Option<Instant>,
    pub(super) attempts: u32,
    pub(super) _permit: OwnedSemaphorePermit,
}

/// Connection statistics, as they are counted.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) connects: AtomicU64,
    pub(super) connection_errors: AtomicU64,
    pub(super) connections_lost: AtomicU64,
    pub(super) silences: AtomicU64,
    pub(super) unconfirmed: AtomicU64,
    pub(super) resends: AtomicU64,
}

/// What the client and its driver share.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) registry: RwLock<SeriesRegistry>,
    pub(super) pending: Mutex<BTreeMap<u64, InFlight>>,
    pub(super) next_seq: AtomicU64,
    pub(super) window: Arc<Semaphore>,
    /// Wakes the stream writer when batches are queued.
    pub(super) wake: Notify,
    /// Signalled when the pending set becomes empty.
    pub(super) idle: Notify,
    pub(super) counters: Counters,
    pub(super) closing: CancellationToken,
}

impl Inner {
    /// The batches in flight, by sequence number.
    pub(super) fn lock_pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, InFlight>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
