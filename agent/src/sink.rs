//! The spool handle the agent's parts share: sources append their points
//! through it ([`SpoolSink::push`]), the sender takes records from it and
//! records their acks, and it wakes the sender when there is something new.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tracing::error;

use crate::metrics::{Metrics, SourceLabel};
use crate::record::{self, OwnedPoint};
use crate::spool::{RecordSummary, Spool};

/// The summary of a batch's points that the spool keeps per record.
pub fn summary(points: &[OwnedPoint]) -> RecordSummary {
    RecordSummary {
        points: points.len() as u64,
        oldest_unix_nano: points.iter().map(|p| p.time_unix_nano).min(),
    }
}

/// The summary of an encoded batch (the spool reads its records with it at
/// open): a compact payload's header, an old one decoded; an undecodable
/// payload counts its declared points and no time.
pub fn summarize(payload: &[u8]) -> RecordSummary {
    match record::summary_of(payload) {
        Some((points, oldest_unix_nano)) => RecordSummary {
            points,
            oldest_unix_nano,
        },
        None => RecordSummary {
            points: record::points_of(payload),
            oldest_unix_nano: None,
        },
    }
}

/// Where sources put points: the spool, in batches of at most
/// `max_batch_points`.
#[derive(Debug)]
pub struct SpoolSink {
    spool: Arc<Mutex<Spool>>,
    wake: Notify,
    max_batch_points: usize,
    metrics: Arc<Metrics>,
}

impl SpoolSink {
    /// A sink over `spool`.
    pub fn new(spool: Arc<Mutex<Spool>>, max_batch_points: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            spool,
            wake: Notify::new(),
            max_batch_points: max_batch_points.max(1),
            metrics,
        }
    }

    /// The spool, locked.
    pub fn lock(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Completes after the next [`push`](Self::push) (or at once if one
    /// came since the last wake-up).
    pub fn pushed(&self) -> Notified<'_> {
        self.wake.notified()
    }

    /// Appends points; counts them as collected from `source` once they are
    /// in the spool (or as dropped with reason `spool_error`).
    pub fn push(&self, source: &str, points: &[OwnedPoint]) {
        for chunk in points.chunks(self.max_batch_points) {
            let payload = record::encode(chunk);
            let res = self.lock().append_summarized(&payload, summary(chunk));
            match res {
                Ok(_) => {
                    self.metrics
                        .points_collected
                        .get_or_create(&SourceLabel {
                            source: source.to_owned(),
                        })
                        .inc_by(chunk.len() as u64);
                }
                Err(e) => {
                    error!(error = %e, points = chunk.len(), "cannot append to the spool; points dropped");
                    self.metrics.dropped("spool_error", chunk.len() as u64);
                }
            }
        }
        self.wake.notify_one();
    }
}
