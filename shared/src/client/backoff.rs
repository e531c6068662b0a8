//! The pause before a reconnect attempt: exponential, capped, with full
//! jitter. After n failed attempts (n = 0 right after a connection is lost)
//! the pause is drawn uniformly from 0 to min(cap, 250 ms × 2^n): agents that
//! lost their relay together reconnect spread over the whole window instead
//! of in waves, and none waits longer than the cap once the relay is back.

use std::time::Duration;

/// The window of the first pause, right after a connection is lost.
pub const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The longest pause after `failures` failed attempts: 250 ms doubled per
/// failure, at most `cap` (and at least 250 ms, whatever the cap).
pub fn pause_ceiling(failures: u32, cap: Duration) -> Duration {
    FIRST_PAUSE
        .saturating_mul(1u32 << failures.min(16))
        .min(cap.max(FIRST_PAUSE))
}

/// The pause for a draw `unit` in [0, 1): `unit` × the ceiling.
pub fn pause_at(failures: u32, cap: Duration, unit: f64) -> Duration {
    pause_ceiling(failures, cap).mul_f64(unit.clamp(0.0, 1.0))
}

/// A pause drawn at random for `failures` failed attempts (full jitter).
pub fn reconnect_pause(failures: u32, cap: Duration) -> Duration {
    pause_at(failures, cap, crate::jitter::unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(5);

    #[test]
    fn the_ceiling_doubles_from_250_ms_to_the_cap() {
        let ceilings: Vec<u128> = (0..8).map(|n| pause_ceiling(n, CAP).as_millis()).collect();
        assert_eq!(ceilings, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        // No overflow however long the outage.
        assert_eq!(pause_ceiling(u32::MAX, CAP), CAP);
        // A cap below the first pause is raised to it.
        assert_eq!(
            pause_ceiling(3, Duration::from_millis(100)),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        for n in [0, 1, 4, 5, 40] {
            let ceiling = pause_ceiling(n, CAP);
            assert_eq!(pause_at(n, CAP, 0.0), Duration::ZERO);
            assert_eq!(pause_at(n, CAP, 0.5), ceiling / 2);
            let top = pause_at(n, CAP, 1.0 - f64::EPSILON);
            assert!(
                top <= ceiling && top > ceiling.mul_f64(0.999),
                "{n}: {top:?}"
            );
            // Never beyond the ceiling, whatever the draw.
            assert_eq!(pause_at(n, CAP, 7.0), ceiling);
        }
    }

    #[test]
    fn random_pauses_stay_within_the_window_and_use_all_of_it() {
        for n in [0, 2, 9] {
            let ceiling = pause_ceiling(n, CAP);
            let draws: Vec<Duration> = (0..400).map(|_| reconnect_pause(n, CAP)).collect();
            assert!(draws.iter().all(|d| *d <= ceiling), "{n}: {draws:?}");
            // Both the lowest and the highest tenth of the window are drawn:
            // the pause is not confined to its upper half.
            assert!(draws.iter().any(|d| *d < ceiling / 10), "{n}");
            assert!(draws.iter().any(|d| *d > ceiling.mul_f64(0.9)), "{n}");
        }
    }
}
