//! A batch on its way from a stream to its node's micro-batcher.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::error::SinkError;
use crate::ingest::AcceptedPoint;

#[derive(Debug)]
pub(crate) struct Submission {
    pub(super) node: Arc<str>,
    pub(super) points: Vec<AcceptedPoint>,
    pub(super) received_at: i64,
    pub(super) done: Option<oneshot::Sender<Result<(), SinkError>>>,
    /// The batch's place in the queue, given back when its batcher takes it.
    pub(super) queued: OwnedSemaphorePermit,
}
