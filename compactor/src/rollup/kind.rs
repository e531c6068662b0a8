//! A series' metric type (the protocol's `MetricType`, carried by the raw
//! schema's `metric_type` column, docs/data.md): which series get an
//! `increase`, and an interval's type from its rows'.

use horizon_shared::proto::MetricType;
use horizon_shared::raw::{metric_type_name, metric_type_of_name};

/// What rollups ask of a metric type.
pub trait Kind: Copy {
    /// The `metric_type` column's value.
    fn as_str(self) -> &'static str;
    /// Whether a series of this type and metric name gets an `increase`:
    /// counters, histograms (`_bucket`, `_sum`, `_count`), a summary's
    /// `_sum` and `_count`, and series of unknown type (flagged
    /// `increase_assumed`, since they may be gauges).
    fn cumulative(self, metric: &str) -> bool;
    /// The type of an interval after a sample of type `next`: a declared
    /// type replaces what came before; an unknown one keeps it.
    fn then(self, next: Self) -> Self;
}

impl Kind for MetricType {
    fn as_str(self) -> &'static str {
        metric_type_name(self)
    }

    fn cumulative(self, metric: &str) -> bool {
        match self {
            MetricType::Counter | MetricType::Histogram | MetricType::Unspecified => true,
            MetricType::Gauge => false,
            MetricType::Summary => metric.ends_with("_sum") || metric.ends_with("_count"),
        }
    }

    fn then(self, next: Self) -> Self {
        if next == MetricType::Unspecified {
            self
        } else {
            next
        }
    }
}

/// A `metric_type` value (anything else reads as unknown).
pub fn parse(s: &str) -> MetricType {
    metric_type_of_name(s).unwrap_or(MetricType::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_series_are_cumulative() {
        for t in ["counter", "gauge", "histogram", "summary", "unknown"] {
            assert_eq!(parse(t).as_str(), t);
        }
        assert_eq!(parse("untyped"), MetricType::Unspecified);
        assert!(MetricType::Counter.cumulative("x_total"));
        assert!(!MetricType::Gauge.cumulative("temp"));
        assert!(MetricType::Summary.cumulative("rpc_seconds_count"));
        assert!(!MetricType::Summary.cumulative("rpc_seconds"));
        assert!(MetricType::Unspecified.cumulative("anything"));
        assert_eq!(
            MetricType::Counter.then(MetricType::Unspecified),
            MetricType::Counter
        );
        assert_eq!(
            MetricType::Unspecified.then(MetricType::Gauge),
            MetricType::Gauge
        );
    }
}
