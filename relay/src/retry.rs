//! Retry with exponential backoff, shared by the sinks' writers (the
//! micro-batcher's object-store puts and the InfluxDB writer).
//!
//! An operation is retried until it succeeds, for as long as it takes,
//! except once the relay is closing: then it gets
//! [`CLOSING_ATTEMPTS`] attempts in all, and each wait is cut short. Each
//! wait is drawn at random between half the [`Backoff`] delay and all of
//! it, so that writers that failed together do not retry together.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Attempts an operation gets in all once the relay is closing.
pub const CLOSING_ATTEMPTS: u32 = 3;

/// Delays that double from `base` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `base`, doubles after each failure, never above `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The wait after failed attempt `attempt` (1 for the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// One failed attempt, as seen by [`retry`]'s observer.
#[derive(Debug)]
pub struct Failure<'a, E> {
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// Why.
    pub error: &'a E,
    /// How long until the next attempt (when there is one).
    pub retry_in: Duration,
    /// True when this was the last attempt (the relay is closing).
    pub giving_up: bool,
}

/// Runs `op` (given the attempt number, from 1) until it returns `Ok`, or
/// until the relay is `closing` and [`CLOSING_ATTEMPTS`] attempts have
/// failed; then returns the last error and the number of attempts. Between
/// attempts it waits the [`Backoff`] delay, or until `closing` fires.
/// `failed` sees every failure, the last one included.
pub async fn retry<T, E, Op, Fut>(
    backoff: Backoff,
    closing: &CancellationToken,
    mut op: Op,
    mut failed: impl FnMut(Failure<'_, E>),
) -> Result<T, (E, u32)>
where
    Op: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let error = match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let retry_in = horizon_shared::jitter::spread(backoff.delay(attempt), 0.5);
        let giving_up = closing.is_cancelled() && attempt >= CLOSING_ATTEMPTS;
        failed(Failure {
            attempt,
            error: &error,
            retry_in,
            giving_up,
        });
        if giving_up {
            return Err((error, attempt));
        }
        tokio::select! {
            () = tokio::time::sleep(retry_in) => {}
            () = closing.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let delays: Vec<u64> = (1..=10).map(|a| b.delay(a).as_millis() as u64).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn retries_until_success_and_reports_each_failure() {
        let closing = CancellationToken::new();
        let mut seen = Vec::new();
        let out = retry(
            Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            &closing,
            |attempt| async move {
                if attempt < 4 {
                    Err(attempt)
                } else {
                    Ok("stored")
                }
            },
            |f| seen.push((f.attempt, *f.error, f.giving_up)),
        )
        .await;
        assert_eq!(out, Ok("stored"));
        assert_eq!(seen, [(1, 1, false), (2, 2, false), (3, 3, false)]);
    }

    #[tokio::test]
    async fn gives_up_after_three_attempts_once_closing() {
        let closing = CancellationToken::new();
        closing.cancel();
        let mut seen = Vec::new();
        // A day-long backoff: the waits are cut short by `closing`.
        let out: Result<(), _> = retry(
            Backoff::new(Duration::from_secs(86_400), Duration::from_secs(86_400)),
            &closing,
            |attempt| async move { Err(format!("down ({attempt})")) },
            |f| seen.push((f.attempt, f.giving_up)),
        )
        .await;
        assert_eq!(out, Err(("down (3)".to_owned(), 3)));
        assert_eq!(seen, [(1, false), (2, false), (3, true)]);
    }
}
