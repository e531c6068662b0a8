//! The metric data model: what a series is, how it is identified, and which
//! series and points are valid.
//!
//! A series is a metric name plus a label set. Its identity is the 64-bit
//! [`series_hash`] of the name and the labels in canonical (key-sorted)
//! order; the node identity is kept beside it, never inside the labels.

use crate::proto::Label;
use xxhash_rust::xxh3::Xxh3;

/// Label key the relay fills from the client certificate. Agents may not send it.
pub const NODE_LABEL: &str = "node";

/// Label keys agents may not use: `node` (the certificate identity), `time`
/// (InfluxDB's timestamp column) and any key starting with `_` (reserved by
/// InfluxDB 2.x and Flux). Compared byte for byte: `Node` is an ordinary key.
pub fn is_reserved_label_key(key: &str) -> bool {
    key == NODE_LABEL || key == "time" || key.starts_with('_')
}

/// Bounds on a series definition. The defaults are documented in
/// `docs/protocol.md`; the relay makes them configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Longest metric name, in bytes.
    pub max_metric_len: usize,
    /// Most labels on one series.
    pub max_labels: usize,
    /// Longest label key, in bytes.
    pub max_label_key_len: usize,
    /// Longest label value, in bytes.
    pub max_label_value_len: usize,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        Self {
            max_metric_len: 256,
            max_labels: 32,
            max_label_key_len: 128,
            max_label_value_len: 1024,
        }
    }
}

/// Why a series definition is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSeries {
    /// The metric name is empty.
    #[error("empty metric name")]
    EmptyMetric,
    /// The metric name is longer than allowed.
    #[error("metric name of {len} bytes exceeds {max}")]
    MetricTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A name or value contains a control character (newline, tab, NUL, ...).
    #[error("{what} {text:?} contains a control character")]
    ControlCharacter {
        /// Which part: "metric name", "label key" or "label value".
        what: &'static str,
        /// The offending text, cut to 64 characters.
        text: String,
    },
    /// More labels than allowed.
    #[error("{count} labels exceed the limit of {max}")]
    TooManyLabels {
        /// How many were sent.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A label key is empty.
    #[error("empty label key")]
    EmptyLabelKey,
    /// A label value is empty.
    #[error("label {key:?} has an empty value")]
    EmptyLabelValue {
        /// The label's key.
        key: String,
    },
    /// A label key or value is longer than allowed.
    #[error("label {key:?} is too long ({len} bytes, limit {max})")]
    LabelTooLong {
        /// The label's key (cut to 64 characters).
        key: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The same label key twice.
    #[error("label {key:?} appears more than once")]
    DuplicateLabel {
        /// The repeated key.
        key: String,
    },
    /// A reserved label key such as `node`.
    #[error("label key {key:?} is reserved (node identity comes from the client certificate)")]
    ReservedLabel {
        /// The reserved key.
        key: String,
    },
}

/// Why a point is invalid.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum InvalidPoint {
    /// NaN or an infinity.
    #[error("value {0} is not finite")]
    NotFinite(f64),
    /// Timestamp outside the accepted window around the relay's clock.
    #[error("timestamp {ts} ns is outside the accepted window [{min}, {max}]")]
    TimestampOutOfRange {
        /// The point's time, Unix ns.
        ts: i64,
        /// Earliest accepted.
        min: i64,
        /// Latest accepted.
        max: i64,
    },
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

fn check_text(what: &'static str, s: &str) -> Result<(), InvalidSeries> {
    if s.chars().any(char::is_control) {
        return Err(InvalidSeries::ControlCharacter { what, text: cut(s) });
    }
    Ok(())
}

/// Sorts labels into canonical order (by key, then value).
pub fn canonicalize(labels: &mut [Label]) {
    labels.sort_unstable_by(|a, b| a.key.cmp(&b.key).then_with(|| a.value.cmp(&b.value)));
}

/// Validates a series whose labels are already in canonical order.
pub fn validate_series(
    metric: &str,
    labels: &[Label],
    limits: &SeriesLimits,
) -> Result<(), InvalidSeries> {
    if metric.is_empty() {
        return Err(InvalidSeries::EmptyMetric);
    }
    if metric.len() > limits.max_metric_len {
        return Err(InvalidSeries::MetricTooLong {
            len: metric.len(),
            max: limits.max_metric_len,
        });
    }
    check_text("metric name", metric)?;
    if labels.len() > limits.max_labels {
        return Err(InvalidSeries::TooManyLabels {
            count: labels.len(),
            max: limits.max_labels,
        });
    }
    let mut prev: Option<&str> = None;
    for label in labels {
        let key = label.key.as_str();
        if key.is_empty() {
            return Err(InvalidSeries::EmptyLabelKey);
        }
        if key.len() > limits.max_label_key_len {
            return Err(InvalidSeries::LabelTooLong {
                key: cut(key),
                len: key.len(),
                max: limits.max_label_key_len,
            });
        }
        check_text("label key", key)?;
        if is_reserved_label_key(key) {
            return Err(InvalidSeries::ReservedLabel {
                key: key.to_owned(),
            });
        }
        if prev == Some(key) {
            return Err(InvalidSeries::DuplicateLabel {
                key: key.to_owned(),
            });
        }
        prev = Some(key);
        if label.value.is_empty() {
            return Err(InvalidSeries::EmptyLabelValue {
                key: key.to_owned(),
            });
        }
        if label.value.len() > limits.max_label_value_len {
            return Err(InvalidSeries::LabelTooLong {
                key: cut(key),
                len: label.value.len(),
                max: limits.max_label_value_len,
            });
        }
        check_text("label value", &label.value)?;
    }
    Ok(())
}

/// Stable 64-bit identity of a series: XXH3-64 (seed 0) over the metric name
/// and the canonical labels, each string preceded by its length as a
/// little-endian u32 so that no two different series encode alike.
///
/// Stable across processes, hosts and versions: it is stored in the Parquet
/// objects and used by the compactor.
pub fn series_hash(metric: &str, labels: &[Label]) -> u64 {
    let mut h = Xxh3::new();
    let mut put = |s: &str| {
        h.update(&(s.len() as u32).to_le_bytes());
        h.update(s.as_bytes());
    };
    put(metric);
    for l in labels {
        put(&l.key);
        put(&l.value);
    }
    h.digest()
}

/// The window of timestamps a relay accepts, relative to its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Oldest accepted point, as an age in nanoseconds.
    pub max_age_ns: i64,
    /// Furthest accepted point in the future, in nanoseconds.
    pub max_future_ns: i64,
}

impl TimeWindow {
    /// The accepted `[min, max]` range for a clock reading `now_ns`.
    pub fn bounds(&self, now_ns: i64) -> (i64, i64) {
        (
            now_ns.saturating_sub(self.max_age_ns),
            now_ns.saturating_add(self.max_future_ns),
        )
    }
}

/// Validates one point against precomputed time bounds.
#[inline]
pub fn validate_point(ts: i64, value: f64, (min, max): (i64, i64)) -> Result<(), InvalidPoint> {
    if !value.is_finite() {
        return Err(InvalidPoint::NotFinite(value));
    }
    if ts < min || ts > max {
        return Err(InvalidPoint::TimestampOutOfRange { ts, min, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(k: &str, v: &str) -> Label {
        Label {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn reserved_label_keys_are_case_sensitive() {
        for k in ["node", "time", "_measurement", "_"] {
            assert!(is_reserved_label_key(k), "{k}");
        }
        for k in ["Node", "NODE", "Time", "nodes", "gpu_"] {
            assert!(!is_reserved_label_key(k), "{k}");
        }
    }

    #[test]
    fn hash_ignores_label_order_after_canonicalize() {
        let mut a = vec![l("gpu", "0"), l("uuid", "GPU-1")];
        let mut b = vec![l("uuid", "GPU-1"), l("gpu", "0")];
        canonicalize(&mut a);
        canonicalize(&mut b);
        assert_eq!(series_hash("gpu_util", &a), series_hash("gpu_util", &b));
    }

    #[test]
    fn hash_is_unambiguous() {
        // Same concatenated bytes, different split: must differ.
        assert_ne!(
            series_hash("ab", &[l("c", "d")]),
            series_hash("a", &[l("bc", "d")])
        );
        assert_ne!(series_hash("m", &[l("k", "v")]), series_hash("m", &[]));
    }

    #[test]
    fn hash_is_stable() {
        // Stored in Parquet and used by the compactor: must never change.
        assert_eq!(
            series_hash("gpu_util", &[l("gpu", "0")]),
            0xb5ad_221b_dce4_1aee
        );
    }

    #[test]
    fn validation_rules() {
        let lim = SeriesLimits::default();
        assert_eq!(
            validate_series("", &[], &lim),
            Err(InvalidSeries::EmptyMetric)
        );
        assert!(validate_series("m", &[l("node", "x")], &lim).is_err());
        assert!(validate_series("m", &[l("_field", "x")], &lim).is_err());
        assert!(validate_series("m", &[l("a", "1"), l("a", "2")], &lim).is_err());
        assert!(validate_series("m", &[l("a", "")], &lim).is_err());
        assert!(validate_series("m\n", &[], &lim).is_err());
        assert!(validate_series("m", &[l("a", "x\ty")], &lim).is_err());
        let many: Vec<_> = (0..33).map(|i| l(&format!("k{i:02}"), "v")).collect();
        assert!(matches!(
            validate_series("m", &many, &lim),
            Err(InvalidSeries::TooManyLabels { .. })
        ));
        assert!(
            validate_series("gpu util, \"quoted\"=x", &[l("a b,c=d", "e\"f\\g")], &lim).is_ok()
        );
    }

    #[test]
    fn point_rules() {
        let b = (100, 200);
        assert!(validate_point(150, 1.0, b).is_ok());
        assert!(validate_point(150, f64::NAN, b).is_err());
        assert!(validate_point(150, f64::INFINITY, b).is_err());
        assert!(validate_point(99, 1.0, b).is_err());
        assert!(validate_point(201, 1.0, b).is_err());
    }
}
