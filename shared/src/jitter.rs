//! Random spreads for retry pauses, so that many clients or writers that
//! failed together do not retry together.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// A random number in [0, 1), from the standard library's randomly keyed
/// hasher (a fresh key per call): spread enough for retry pauses, and no
/// random-number crate needed.
pub fn unit() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// `d` scaled by a random factor in [`low`, 1): with `low` 0.5, a pause of
/// `d` becomes one between half of it and all of it.
pub fn spread(d: Duration, low: f64) -> Duration {
    let low = low.clamp(0.0, 1.0);
    d.mul_f64(low + (1.0 - low) * unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_in_range_and_differ() {
        let draws: Vec<f64> = (0..1000).map(|_| unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mut sorted = draws.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        assert!(sorted.len() > 990, "{} distinct of 1000", sorted.len());
        let mean = draws.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
        let d = Duration::from_secs(2);
        for _ in 0..100 {
            let s = spread(d, 0.5);
            assert!(s >= Duration::from_secs(1) && s < d, "{s:?}");
        }
    }
}
