//! The aggregates of one series over one interval, and how they combine.
//!
//! `increase` is the sum of reset-aware differences between consecutive
//! samples of the series within its hour, each difference counted in the
//! interval of its later sample: `b - a` when `b >= a`, else `b` (a drop is a
//! counter reset, as Prometheus' `increase()` reads it, without its
//! extrapolation). So the increases of an hour's minutes add up to the
//! hour's increase, and the first sample of an hour starts it (the
//! difference from the previous hour's last sample is left to readers, who
//! have both in `first` and `last`: docs/data.md).

/// Sample time (Unix ns) and value.
pub type Sample = (i64, f64);

/// The reset-aware difference from `prev` to `cur`.
pub fn delta(prev: f64, cur: f64) -> f64 {
    if cur >= prev { cur - prev } else { cur }
}

/// Aggregates of one series over one interval (at least one sample).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    /// Samples.
    pub count: u64,
    /// Sum of the values.
    pub sum: f64,
    /// Least value.
    pub min: f64,
    /// Greatest value.
    pub max: f64,
    /// The earliest sample.
    pub first: Sample,
    /// The latest sample.
    pub last: Sample,
    /// Reset-aware increase (see the module header); computed for every
    /// series, written only for cumulative ones.
    pub increase: f64,
}

impl Agg {
    /// An interval starting with sample `s`, whose predecessor in the hour
    /// (if any) was `prev`.
    pub fn start(s: Sample, prev: Option<Sample>) -> Self {
        Self {
            count: 1,
            sum: s.1,
            min: s.1,
            max: s.1,
            first: s,
            last: s,
            increase: prev.map_or(0.0, |p| delta(p.1, s.1)),
        }
    }

    /// Adds the next sample (later than every sample so far).
    pub fn push(&mut self, s: Sample) {
        self.count += 1;
        self.sum += s.1;
        self.min = self.min.min(s.1);
        self.max = self.max.max(s.1);
        self.increase += delta(self.last.1, s.1);
        self.last = s;
    }

    /// Adds a following interval's aggregates (all its samples later than
    /// this one's; its increase already counts the step from this one's
    /// last sample).
    pub fn append(&mut self, next: &Agg) {
        self.count += next.count;
        self.sum += next.sum;
        self.min = self.min.min(next.min);
        self.max = self.max.max(next.max);
        self.last = next.last;
        self.increase += next.increase;
    }

    /// The increase within the interval, without the step into its first
    /// sample from `prev` (the same rule that made it).
    pub fn internal(&self, prev: Option<Sample>) -> f64 {
        match prev {
            Some(p) => self.increase - delta(p.1, self.first.1),
            None => self.increase,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_and_edges() {
        // 10, 15, 3 (reset), 8: increase 5 + 3 + 5 = 13.
        let mut a = Agg::start((1, 10.0), None);
        for s in [(2, 15.0), (3, 3.0), (4, 8.0)] {
            a.push(s);
        }
        assert_eq!(a.increase, 13.0);
        assert_eq!((a.count, a.sum, a.min, a.max), (4, 36.0, 3.0, 15.0));
        assert_eq!((a.first, a.last), ((1, 10.0), (4, 8.0)));
        // The next interval counts the step from 8 to 20.
        let mut b = Agg::start((5, 20.0), Some(a.last));
        b.push((6, 21.0));
        assert_eq!(b.increase, 13.0);
        assert_eq!(b.internal(Some(a.last)), 1.0);
        let mut whole = a;
        whole.append(&b);
        assert_eq!(whole.increase, 26.0);
        assert_eq!(whole.count, 6);
        assert_eq!(whole.last, (6, 21.0));
        // A drop into the next interval is a reset too.
        assert_eq!(Agg::start((7, 2.0), Some((6, 21.0))).increase, 2.0);
    }
}
