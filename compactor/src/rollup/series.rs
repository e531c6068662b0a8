//! One series' hour, in time order, folded into its minute rows and its
//! hour row. The items are samples, or the minute rows of an earlier
//! generation standing for the samples they summarize (a late fold keeps a
//! minute as its row when no late sample falls inside its span).

use std::sync::Arc;

use super::agg::{Agg, Sample, delta};
use super::kind::Kind;
use super::rows::{Row, SeriesKey};
use horizon_shared::proto::MetricType;

/// Nanoseconds in a minute.
pub const MINUTE_NS: i64 = 60_000_000_000;

/// The start of the minute holding `t` (Unix ns).
pub fn minute_of(t: i64) -> i64 {
    t.div_euclid(MINUTE_NS) * MINUTE_NS
}

/// A series' hour being folded into minute rows, item by item in time order.
#[derive(Debug)]
pub struct SeriesAcc {
    key: Arc<SeriesKey>,
    prev: Option<Sample>,
    cur: Option<Row>,
    /// Minute rows so far, in order.
    pub minutes: Vec<Row>,
}

impl SeriesAcc {
    /// A series with nothing folded yet.
    pub fn new(key: Arc<SeriesKey>) -> Self {
        Self {
            key,
            prev: None,
            cur: None,
            minutes: Vec::new(),
        }
    }

    /// The series.
    pub fn key(&self) -> &Arc<SeriesKey> {
        &self.key
    }

    /// The latest sample folded so far.
    pub fn prev(&self) -> Option<Sample> {
        self.prev
    }

    fn close(&mut self) {
        if let Some(r) = self.cur.take() {
            self.minutes.push(r);
        }
    }

    /// Folds in the next sample (later than every item so far).
    pub fn sample(&mut self, s: Sample, ty: MetricType) {
        let m = minute_of(s.0);
        match self.cur.as_mut() {
            Some(r) if r.start == m => {
                r.agg.push(s);
                r.metric_type = r.metric_type.then(ty);
            }
            _ => {
                self.close();
                self.cur = Some(Row {
                    key: Arc::clone(&self.key),
                    metric_type: ty,
                    start: m,
                    agg: Agg::start(s, self.prev),
                });
            }
        }
        self.prev = Some(s);
    }

    /// Folds in an earlier generation's minute row `old` as a whole (every
    /// item so far earlier than its first sample, every later item later
    /// than its last). `old_prev` is the sample before it in that
    /// generation: the step from it is replaced by the step from the
    /// sample before it now.
    pub fn summary(&mut self, old: &Row, old_prev: Option<Sample>) {
        let mut agg = old.agg;
        if self.prev != old_prev {
            let step = self.prev.map_or(0.0, |p| delta(p.1, agg.first.1));
            agg.increase = step + old.agg.internal(old_prev);
        }
        match self.cur.as_mut() {
            Some(r) if r.start == old.start => {
                r.agg.append(&agg);
                r.metric_type = r.metric_type.then(old.metric_type);
            }
            _ => {
                self.close();
                self.cur = Some(Row {
                    key: Arc::clone(&self.key),
                    metric_type: old.metric_type,
                    start: old.start,
                    agg,
                });
            }
        }
        self.prev = Some(agg.last);
    }

    /// The minute rows and the hour's row (starting at `hour_start`).
    pub fn finish(mut self, hour_start: i64) -> (Vec<Row>, Option<Row>) {
        self.close();
        let hour = hour_row(&self.minutes, hour_start);
        (self.minutes, hour)
    }
}

/// The hour's row of a series from its minute rows (in order).
pub fn hour_row(minutes: &[Row], hour_start: i64) -> Option<Row> {
    let (first, rest) = minutes.split_first()?;
    let mut h = Row {
        start: hour_start,
        ..first.clone()
    };
    for r in rest {
        h.agg.append(&r.agg);
        h.metric_type = h.metric_type.then(r.metric_type);
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Arc<SeriesKey> {
        Arc::new(SeriesKey {
            metric: "m".into(),
            node: "n".into(),
            series_id: 1,
            labels: vec![],
        })
    }

    const S: i64 = 1_000_000_000;

    fn fold(samples: &[(i64, f64)]) -> Vec<Row> {
        let mut a = SeriesAcc::new(key());
        for &(t, v) in samples {
            a.sample((t * S, v), MetricType::Counter);
        }
        a.finish(0).0
    }

    #[test]
    fn minutes_from_samples_and_from_summaries_agree() {
        // A counter over three minutes with a reset in the second.
        let all = [
            (10, 1.0),
            (50, 4.0),
            (70, 6.0),
            (80, 2.0),
            (100, 3.0),
            (130, 9.0),
            (170, 10.0),
        ];
        let whole = fold(&all);
        assert_eq!(whole.len(), 3);
        assert_eq!(
            whole.iter().map(|r| r.agg.increase).collect::<Vec<_>>(),
            [3.0, 2.0 + 2.0 + 1.0, 6.0 + 1.0]
        );
        // Without the samples at 70 and 80, then with them added back in
        // between the kept minutes' summaries.
        let partial = fold(&[(10, 1.0), (50, 4.0), (100, 3.0), (130, 9.0), (170, 10.0)]);
        let mut a = SeriesAcc::new(key());
        a.summary(&partial[0], None);
        a.sample((70 * S, 6.0), MetricType::Counter);
        a.sample((80 * S, 2.0), MetricType::Counter);
        // Minute 1's old row (100 s) and minute 2's are later.
        a.summary(&partial[1], Some(partial[0].agg.last));
        a.summary(&partial[2], Some(partial[1].agg.last));
        let (merged, hour) = a.finish(0);
        assert_eq!(merged, whole);
        let h = hour.unwrap();
        assert_eq!(h.agg.count, 7);
        assert_eq!(h.agg.increase, 3.0 + 5.0 + 7.0);
        assert_eq!((h.agg.min, h.agg.max), (1.0, 10.0));
    }
}
