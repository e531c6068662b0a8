//! A series as a stream defines it, shared by the dictionary that holds it
//! and the points that refer to it.

use std::sync::Arc;

use horizon_shared::proto::{Label, MetricType};

/// A series as defined on a stream, validated once at definition time.
#[derive(Debug)]
pub struct SeriesEntry {
    /// Metric name.
    pub metric: Arc<str>,
    /// Labels in canonical order.
    pub labels: Box<[Label]>,
    /// Stable series identity (see `horizon_shared::model::series_hash`).
    pub series_hash: u64,
    /// Hash of the metric name alone (per-metric caps).
    pub metric_hash: u64,
    /// The metric type its definition gave (unspecified if none, or one
    /// this relay does not know); not part of `series_hash`. It is in the
    /// entry's size, which the dictionary's bounds count.
    pub metric_type: MetricType,
    /// Bytes of text in the series (metric, label keys and values), for
    /// estimating the size of buffered rows.
    pub text_bytes: usize,
    /// The series in InfluxDB line protocol, escaped once: made by the
    /// InfluxDB sink the first time it writes the series.
    /// Boxed: a pointer in every entry, the text only for series written.
    pub line_protocol: std::sync::OnceLock<Box<crate::sink::lineproto::SeriesLine>>,
    /// The number of the series' label set in the Parquet sink's label
    /// sets, once coded there.
    pub label_slot: horizon_shared::raw::LabelSlot,
}

/// `s` cut to its first 64 characters, for messages.
pub(crate) fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}
