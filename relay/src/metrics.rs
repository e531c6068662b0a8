//! The relay's Prometheus metrics (served by [`crate::http`]).
//!
//! Every label has a bounded set of values: reasons and kinds are fixed
//! enums, and per-node budget metrics list only the top nodes
//! (`budgets.metrics_top_nodes`), computed at scrape time.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::budget::Budgets;
use crate::config::Settings;
use crate::ingest::BatchOutcome;

mod budget;
mod tls;

pub use tls::TlsMetrics;

use budget::BudgetCollector;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: String,
}

/// Kinds of stream errors counted in `horizon_relay_stream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamErrorKind {
    /// Length prefix above `limits.max_frame_bytes`.
    FrameTooLarge,
    /// Undecodable frame (zero length, not protobuf).
    MalformedFrame,
    /// The stream ended inside a frame.
    TruncatedFrame,
    /// A frame's payload did not arrive within
    /// `limits.frame_read_timeout_secs`.
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

/// A limit that made a batch wait after it was read (label `limit` of
/// `horizon_relay_throttled_batches_total`); each wait is also reported in
/// the batch's ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The Parquet sink queue was full (`limits.backpressure_threshold`).
    SinkQueue,
    /// The connection had `server.max_in_flight_batches_per_connection`
    /// batches unacked.
    InFlight,
    /// The next frame did not fit in the connection's or the relay's frame
    /// buffer (`limits.max_frame_buffer_bytes_*`); waited before it was read.
    FrameBuffer,
}

impl Throttle {
    fn as_str(self) -> &'static str {
        match self {
            Self::SinkQueue => "sink_queue",
            Self::InFlight => "in_flight",
            Self::FrameBuffer => "frame_buffer",
        }
    }
}

/// Handles to every metric the relay updates.
#[derive(Debug)]
pub struct RelayMetrics {
    registry: Registry,
    /// Connections open now.
    pub connections_active: Gauge,
    /// Connections established (handshake and identity passed).
    pub connections_accepted: Counter,
    refused: Family<Reason, Counter>,
    /// QUIC handshakes in progress now.
    pub handshakes_in_progress: Gauge,
    /// Handshakes dropped at `server.handshake_timeout_secs`.
    pub handshakes_timed_out: Counter,
    handshakes_refused: Family<Reason, Counter>,
    /// Stateless QUIC Retry packets sent (handshake bound full, or the
    /// handshake rate above `server.handshake_retry_per_sec`).
    pub handshake_retries: Counter,
    /// New-handshake rate and whether it switched Retry on.
    pub(crate) handshake_rate: crate::handshake::RateGauges,
    /// Connections quinn holds state for (handshaking, open or closing).
    pub quic_connections: Gauge,
    /// Bytes held by every stream's series dictionary.
    pub dictionary_bytes: Gauge,
    /// Bytes of frames being read, all connections.
    pub frame_buffer_bytes: Gauge,
    /// Streams open now.
    pub streams_active: Gauge,
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
    stream_errors: Family<Kind, Counter>,
    /// Points per batch.
    pub batch_points: Histogram,
    /// Time to process one batch (decode to ack written), seconds.
    pub batch_seconds: Histogram,
    /// Batches read and not yet acked, all connections.
    pub in_flight_batches: Gauge,
    /// Batches in flight on a connection as each one is admitted.
    pub connection_in_flight: Histogram,
    throttled: Family<LimitLabel, Counter>,
    throttled_seconds: Family<LimitLabel, Counter<f64, AtomicU64>>,
    /// Sink metrics (registered in the same registry).
    pub sink: Arc<crate::sink::SinkMetrics>,
    /// Certificate, CRL and revocation metrics.
    pub tls: TlsMetrics,
}

impl RelayMetrics {
    /// Registers every metric, plus the per-node budget collector; the
    /// configured limits are exported as `horizon_relay_limit`.
    pub fn new(budgets: Arc<Budgets>, settings: &Settings) -> Self {
        let top_nodes = settings.budgets.metrics_top_nodes;
        let mut r = Registry::with_prefix("horizon_relay");
        let connections_active = Gauge::default();
        r.register(
            "connections_active",
            "QUIC connections open now",
            connections_active.clone(),
        );
        let connections_accepted = Counter::default();
        r.register(
            "connections_accepted",
            "Connections established (mutual TLS and identity passed)",
            connections_accepted.clone(),
        );
        let refused = Family::<Reason, Counter>::default();
        r.register(
            "connections_refused",
            "Connections refused, by reason (limit: server.max_connections; handshake: TLS failed, e.g. no, unknown or expired client certificate; revoked: the node certificate is revoked by a CRL (security.tls_crl_path); identity: no usable node name)",
            refused.clone(),
        );
        let handshakes_in_progress = Gauge::default();
        r.register(
            "handshakes_in_progress",
            "QUIC handshakes in progress (at most server.max_handshakes_in_progress); they hold no connection slot",
            handshakes_in_progress.clone(),
        );
        let handshakes_timed_out = Counter::default();
        r.register(
            "handshakes_timed_out",
            "Handshakes dropped unfinished after server.handshake_timeout_secs",
            handshakes_timed_out.clone(),
        );
        let handshakes_refused = Family::<Reason, Counter>::default();
        r.register(
            "handshakes_refused",
            "Handshakes ended by the relay before they finished, by reason (evicted: the oldest half-open one, to make room for an Initial from a validated address when server.max_handshakes_in_progress was full; retry_failed: a Retry could not be sent; shutting_down)",
            handshakes_refused.clone(),
        );
        let handshake_retries = Counter::default();
        r.register(
            "handshake_retries",
            "Stateless QUIC Retry packets sent to validate an address: while new handshakes per second were above server.handshake_retry_per_sec (or always, with 0), or while server.max_handshakes_in_progress was full",
            handshake_retries.clone(),
        );
        let handshake_rate = crate::handshake::RateGauges::default();
        r.register(
            "handshake_initials_per_second",
            "QUIC Initials received in the last whole second (the rate compared with server.handshake_retry_per_sec)",
            handshake_rate.per_sec.clone(),
        );
        r.register(
            "handshake_address_validation",
            "1 while every Initial from an address not yet validated gets a QUIC Retry (rate above server.handshake_retry_per_sec, or 0 configured), else 0",
            handshake_rate.validating.clone(),
        );
        let quic_connections = Gauge::default();
        r.register(
            "quic_connections",
            "Connections the QUIC endpoint holds state for: handshaking, established or closing",
            quic_connections.clone(),
        );
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
        let in_flight_batches = Gauge::default();
        r.register(
            "in_flight_batches",
            "Batches read and not yet acked, all connections",
            in_flight_batches.clone(),
        );
        let connection_in_flight = Histogram::new(exponential_buckets(1.0, 2.0, 17));
        r.register(
            "connection_in_flight_batches",
            "Batches in flight on a connection (read, not yet acked), observed as each batch is admitted; at most server.max_in_flight_batches_per_connection",
            connection_in_flight.clone(),
        );
        let throttled = Family::<LimitLabel, Counter>::default();
        r.register(
            "throttled_batches",
            "Batches that waited, by the limit they waited for (sink_queue: limits.backpressure_threshold; in_flight: server.max_in_flight_batches_per_connection; frame_buffer: limits.max_frame_buffer_bytes_*, before the frame was read); the ack reports the sink_queue and in_flight waits",
            throttled.clone(),
        );
        let throttled_seconds = Family::<LimitLabel, Counter<f64, AtomicU64>>::default();
        r.register(
            "throttled_seconds",
            "Time batches spent waiting for a limit, by limit",
            throttled_seconds.clone(),
        );
        let limits = Family::<LimitLabel, Gauge>::default();
        r.register(
            "limit",
            "Configured limits: connections (server.max_connections), handshakes_in_progress (server.max_handshakes_in_progress), streams_per_connection, in_flight_batches_per_connection, sink_queue_batches (limits.backpressure_threshold), dictionary_bytes_per_stream, dictionary_bytes_per_connection, dictionary_bytes_total (limits.max_dictionary_bytes_*), frame_buffer_bytes_per_connection, frame_buffer_bytes_total (limits.max_frame_buffer_bytes_*), receive_window_bytes (server.receive_window_bytes)",
            limits.clone(),
        );
        for (limit, value) in [
            ("connections", settings.max_connections),
            (
                "handshakes_in_progress",
                settings.max_handshakes_in_progress,
            ),
            (
                "streams_per_connection",
                settings.max_streams_per_connection as usize,
            ),
            (
                "in_flight_batches_per_connection",
                settings.max_in_flight_per_connection,
            ),
            ("sink_queue_batches", settings.backpressure_threshold),
            (
                "dictionary_bytes_per_stream",
                settings.dictionary.per_stream,
            ),
            (
                "dictionary_bytes_per_connection",
                settings.dictionary.per_connection,
            ),
            ("dictionary_bytes_total", settings.dictionary.total),
            (
                "frame_buffer_bytes_per_connection",
                settings.frame_buffer.per_connection,
            ),
            ("frame_buffer_bytes_total", settings.frame_buffer.total),
            (
                "receive_window_bytes",
                usize::try_from(settings.receive_window).unwrap_or(usize::MAX),
            ),
        ] {
            limits
                .get_or_create(&LimitLabel {
                    limit: limit.into(),
                })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        for t in [
            Throttle::SinkQueue,
            Throttle::InFlight,
            Throttle::FrameBuffer,
        ] {
            let label = LimitLabel {
                limit: t.as_str().into(),
            };
            let _ = throttled.get_or_create(&label);
            let _ = throttled_seconds.get_or_create(&label);
        }
        r.register_collector(Box::new(BudgetCollector { budgets, top_nodes }));
        let sink = Arc::new(crate::sink::SinkMetrics::new(&mut r));
        let tls = TlsMetrics::new(&mut r);
        // Pre-create the fixed label values so every series shows from the start.
        for reason in ["cardinality", "invalid", "too_large", "overloaded"] {
            let _ = rejected.get_or_create(&Reason {
                reason: reason.into(),
            });
        }
        for reason in ["limit", "handshake", "revoked", "identity"] {
            let _ = refused.get_or_create(&Reason {
                reason: reason.into(),
            });
        }
        for reason in ["evicted", "retry_failed", "shutting_down"] {
            let _ = handshakes_refused.get_or_create(&Reason {
                reason: reason.into(),
            });
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
            let _ = budget_rejected.get_or_create(&LimitLabel {
                limit: limit.into(),
            });
        }
        Self {
            registry: r,
            connections_active,
            connections_accepted,
            refused,
            handshakes_in_progress,
            handshakes_timed_out,
            handshakes_refused,
            handshake_retries,
            handshake_rate,
            quic_connections,
            dictionary_bytes,
            frame_buffer_bytes,
            streams_active,
            batches,
            points_received,
            points_accepted,
            rejected,
            budget_rejected,
            series_admitted,
            stream_errors,
            batch_points,
            batch_seconds,
            in_flight_batches,
            connection_in_flight,
            throttled,
            throttled_seconds,
            sink,
            tls,
        }
    }

    /// Counts a batch that waited `wait` for a limit.
    pub fn throttled(&self, limit: Throttle, wait: std::time::Duration) {
        let label = LimitLabel {
            limit: limit.as_str().into(),
        };
        self.throttled.get_or_create(&label).inc();
        self.throttled_seconds
            .get_or_create(&label)
            .inc_by(wait.as_secs_f64());
    }

    /// Counts a refused connection (`limit`, `handshake`, `revoked` or `identity`).
    pub fn connection_refused(&self, reason: &str) {
        self.refused
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a handshake the relay ended (`evicted`, `retry_failed` or
    /// `shutting_down`).
    pub fn handshake_refused(&self, reason: &str) {
        self.handshakes_refused
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts `count` stream errors of one kind.
    pub fn stream_error(&self, kind: StreamErrorKind, count: u64) {
        self.stream_errors
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
                    .get_or_create(&Reason {
                        reason: reason.into(),
                    })
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
                    .get_or_create(&LimitLabel {
                        limit: limit.into(),
                    })
                    .inc_by(u64::from(count));
            }
        }
        if out.bad_defs > 0 {
            self.stream_error(StreamErrorKind::BadSeriesDef, u64::from(out.bad_defs));
        }
        if out.refused_defs > 0 {
            self.stream_error(StreamErrorKind::DictionaryFull, u64::from(out.refused_defs));
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
