//! Stream and batch metrics: streams open, the bytes their dictionaries and
//! frames hold, batches and points received, accepted and rejected (by
//! reason and by cardinality cap), and streams ended for bad input.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::labels::{Kind, LimitLabel, Reason};
use crate::ingest::BatchOutcome;

/// Kinds of stream errors counted in `horizon_relay_stream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamErrorKind {
    /// Length prefix above `limits.max_frame_bytes`.
    FrameTooLarge,
    /// Undecodable frame (zero length, not protobuf).
    MalformedFrame,
    /// The stream ended inside a frame.
    TruncatedFrame,
    /// A frame's payload fell more than `limits.frame_read_timeout_secs`
    /// behind `limits.min_frame_bytes_per_sec`.
    FrameTimeout,
    /// A frame of a kind this relay does not know (newer agent).
    UnknownFrame,
    /// A series definition that could not be stored.
    BadSeriesDef,
    /// A series definition refused by a dictionary memory bound.
    DictionaryFull,
}

impl StreamErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::FrameTooLarge => "frame_too_large",
            Self::MalformedFrame => "malformed_frame",
            Self::TruncatedFrame => "truncated_frame",
            Self::FrameTimeout => "frame_timeout",
            Self::UnknownFrame => "unknown_frame",
            Self::BadSeriesDef => "bad_series_def",
            Self::DictionaryFull => "dictionary_full",
        }
    }
}

/// Handles to the stream and batch metrics.
#[derive(Debug)]
pub struct StreamMetrics {
    /// Bytes held by every stream's series dictionary.
    pub dictionary_bytes: Gauge,
    /// Bytes of frames being read, all connections.
    pub frame_buffer_bytes: Gauge,
    /// Streams open now.
    pub active: Gauge,
    /// Batches processed.
    pub batches: Counter,
    /// Points received (accepted + rejected).
    pub points_received: Counter,
    /// Points accepted.
    pub points_accepted: Counter,
    rejected: Family<Reason, Counter>,
    budget_rejected: Family<LimitLabel, Counter>,
    /// New series admitted to budgets.
    pub series_admitted: Counter,
    errors: Family<Kind, Counter>,
    /// Points per batch.
    pub batch_points: Histogram,
    /// Time to process one batch (decode to ack written), seconds.
    pub batch_seconds: Histogram,
}

impl StreamMetrics {
    /// Registers the metrics in `r`, every fixed label value from the start.
    pub(super) fn new(r: &mut Registry) -> Self {
        let dictionary_bytes = Gauge::default();
        r.register(
            "dictionary_bytes",
            "Bytes held by the series dictionaries of every stream (at most limits.max_dictionary_bytes_total)",
            dictionary_bytes.clone(),
        );
        let frame_buffer_bytes = Gauge::default();
        r.register(
            "frame_buffer_bytes",
            "Bytes of frames being read, from length prefix to processed batch, all connections (at most limits.max_frame_buffer_bytes_total)",
            frame_buffer_bytes.clone(),
        );
        let streams_active = Gauge::default();
        r.register("streams_active", "Streams open now", streams_active.clone());
        let batches = Counter::default();
        r.register("batches", "Batches processed and acked", batches.clone());
        let points_received = Counter::default();
        r.register(
            "points_received",
            "Points received in batches (accepted + rejected)",
            points_received.clone(),
        );
        let points_accepted = Counter::default();
        r.register(
            "points_accepted",
            "Points accepted",
            points_accepted.clone(),
        );
        let rejected = Family::<Reason, Counter>::default();
        r.register(
            "points_rejected",
            "Points rejected, by the ack's reason",
            rejected.clone(),
        );
        let budget_rejected = Family::<LimitLabel, Counter>::default();
        r.register(
            "budget_rejected_points",
            "Points of new series refused by a cardinality cap, by cap",
            budget_rejected.clone(),
        );
        let series_admitted = Counter::default();
        r.register(
            "budget_series_admitted",
            "New series admitted to a node's budget",
            series_admitted.clone(),
        );
        let stream_errors = Family::<Kind, Counter>::default();
        r.register(
            "stream_errors",
            "Streams reset or frames dropped for bad input, by kind",
            stream_errors.clone(),
        );
        let batch_points = Histogram::new(exponential_buckets(1.0, 4.0, 8));
        r.register("batch_points", "Points per batch", batch_points.clone());
        let batch_seconds = Histogram::new(exponential_buckets(0.000_01, 4.0, 10));
        r.register(
            "batch_processing_seconds",
            "Time from a decoded batch to its ack being written (in durable mode, includes storing it)",
            batch_seconds.clone(),
        );
        for reason in ["cardinality", "invalid", "too_large", "overloaded"] {
            let _ = rejected.get_or_create(&Reason::new(reason));
        }
        for kind in [
            StreamErrorKind::FrameTooLarge,
            StreamErrorKind::MalformedFrame,
            StreamErrorKind::TruncatedFrame,
            StreamErrorKind::UnknownFrame,
            StreamErrorKind::BadSeriesDef,
            StreamErrorKind::DictionaryFull,
        ] {
            let _ = stream_errors.get_or_create(&Kind {
                kind: kind.as_str().into(),
            });
        }
        for limit in ["node", "metric", "relay"] {
            let _ = budget_rejected.get_or_create(&LimitLabel::new(limit));
        }
        Self {
            dictionary_bytes,
            frame_buffer_bytes,
            active: streams_active,
            batches,
            points_received,
            points_accepted,
            rejected,
            budget_rejected,
            series_admitted,
            errors: stream_errors,
            batch_points,
            batch_seconds,
        }
    }

    /// Counts `count` stream errors of one kind.
    pub fn error(&self, kind: StreamErrorKind, count: u64) {
        self.errors
            .get_or_create(&Kind {
                kind: kind.as_str().into(),
            })
            .inc_by(count);
    }

    /// Records a processed batch.
    pub fn record_batch(&self, out: &BatchOutcome, seconds: f64) {
        let r = &out.rejects;
        let n = u64::from(out.ack.accepted) + u64::from(out.ack.rejected);
        let overloaded: u32 = out
            .ack
            .rejections
            .iter()
            .filter(|x| x.reason == horizon_shared::proto::RejectReason::Overloaded as i32)
            .map(|x| x.count)
            .sum();
        self.batches.inc();
        self.points_received.inc_by(n);
        self.points_accepted.inc_by(u64::from(out.ack.accepted));
        self.series_admitted.inc_by(u64::from(out.new_series));
        self.batch_points.observe(n as f64);
        self.batch_seconds.observe(seconds);
        for (reason, count) in [
            ("cardinality", r.cardinality()),
            ("invalid", r.invalid),
            ("too_large", r.too_large),
            ("overloaded", overloaded),
        ] {
            if count > 0 {
                self.rejected
                    .get_or_create(&Reason::new(reason))
                    .inc_by(u64::from(count));
            }
        }
        for (limit, count) in [
            ("node", r.cardinality_node),
            ("metric", r.cardinality_metric),
            ("relay", r.cardinality_relay),
        ] {
            if count > 0 {
                self.budget_rejected
                    .get_or_create(&LimitLabel::new(limit))
                    .inc_by(u64::from(count));
            }
        }
        if out.bad_defs > 0 {
            self.error(StreamErrorKind::BadSeriesDef, u64::from(out.bad_defs));
        }
        if out.refused_defs > 0 {
            self.error(StreamErrorKind::DictionaryFull, u64::from(out.refused_defs));
        }
    }
}
