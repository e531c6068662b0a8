//! Whether object-store writes keep failing: the micro-batcher records each
//! write, readiness (`/readyz`) reads it.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Whether object-store writes are failing, and since when.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failing_since: Mutex<Option<Instant>>,
}

impl StoreHealth {
    fn lock(&self) -> MutexGuard<'_, Option<Instant>> {
        self.failing_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
