//! A series' metric type, as the exposition declared it (`# TYPE`) and the
//! raw schema carries it (`metric_type`, docs/data.md), and which series
//! have an `increase`.

/// The metric type of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricType {
    /// A counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram's series (`_bucket`, `_sum`, `_count`): all cumulative.
    Histogram,
    /// A summary's series: `_sum` and `_count` are cumulative, the
    /// quantiles are not.
    Summary,
    /// Not declared (an untyped exposition, or rows written before the
    /// raw schema carried the type).
    #[default]
    Unknown,
}

impl MetricType {
    /// The name the schemas use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Unknown => "unknown",
        }
    }

    /// A schema value; anything else is `Unknown`.
    pub fn parse(s: &str) -> Self {
        match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            _ => Self::Unknown,
        }
    }

    /// Whether a series of this type and metric name gets an `increase`:
    /// counters, histograms, a summary's `_sum` and `_count`, and series of
    /// unknown type (flagged `increase_assumed`, since they may be gauges).
    pub fn cumulative(self, metric: &str) -> bool {
        match self {
            Self::Counter | Self::Histogram | Self::Unknown => true,
            Self::Gauge => false,
            Self::Summary => metric.ends_with("_sum") || metric.ends_with("_count"),
        }
    }

    /// The type of an interval after a sample of type `next`: a declared
    /// type replaces what came before; an unknown one keeps it.
    pub fn then(self, next: Self) -> Self {
        if next == Self::Unknown { self } else { next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_series_are_cumulative() {
        for t in ["counter", "gauge", "histogram", "summary", "unknown"] {
            assert_eq!(MetricType::parse(t).as_str(), t);
        }
        assert_eq!(MetricType::parse("untyped"), MetricType::Unknown);
        assert!(MetricType::Counter.cumulative("x_total"));
        assert!(!MetricType::Gauge.cumulative("temp"));
        assert!(MetricType::Summary.cumulative("rpc_seconds_count"));
        assert!(!MetricType::Summary.cumulative("rpc_seconds"));
        assert!(MetricType::Unknown.cumulative("anything"));
        assert_eq!(
            MetricType::Counter.then(MetricType::Unknown),
            MetricType::Counter
        );
        assert_eq!(
            MetricType::Unknown.then(MetricType::Gauge),
            MetricType::Gauge
        );
    }
}
