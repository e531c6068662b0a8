//! Rate limiting for log lines that an attacker or a broken fleet could
//! otherwise repeat thousands of times a second.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Allows one event per interval and counts the ones it suppressed.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// At most one event per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when the event may be logged now, `n` being how many were
    /// suppressed since the last one; `None` when it should be suppressed.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| now.duration_since(t) < self.interval) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_one_per_interval_and_counts_the_rest() {
        let r = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        let r2 = LogLimiter::new(Duration::ZERO);
        assert_eq!(r2.allow(), Some(0));
        assert_eq!(r2.allow(), Some(0));
    }
}
