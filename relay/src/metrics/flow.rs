//! Flow-control metrics: batches in flight (all connections, and per
//! connection as each is admitted), the batches that waited for a limit and
//! for how long, and the configured limits themselves.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::labels::LimitLabel;
use crate::config::Settings;

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
    /// The next frame did not fit in the connection's, the node's or the
    /// relay's frame buffer (`limits.max_frame_buffer_bytes_*`); waited
    /// before it was read.
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

/// Handles to the flow-control metrics.
#[derive(Debug)]
pub struct FlowMetrics {
    /// Batches read and not yet acked, all connections.
    pub in_flight_batches: Gauge,
    /// Batches in flight on a connection as each one is admitted.
    pub connection_in_flight: Histogram,
    throttled: Family<LimitLabel, Counter>,
    throttled_seconds: Family<LimitLabel, Counter<f64, AtomicU64>>,
}

impl FlowMetrics {
    /// Registers the metrics in `r`; the configured limits are exported as
    /// `horizon_relay_limit`.
    pub(super) fn new(r: &mut Registry, settings: &Settings) -> Self {
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
            "Configured limits: connections (server.max_connections), connections_per_node (server.max_connections_per_node), handshakes_in_progress (server.max_handshakes_in_progress), streams_per_connection, in_flight_batches_per_connection, sink_queue_batches (limits.backpressure_threshold), dictionary_bytes_per_stream, dictionary_bytes_per_connection, dictionary_bytes_total (limits.max_dictionary_bytes_*), frame_buffer_bytes_per_connection, frame_buffer_bytes_per_node, frame_buffer_bytes_total (limits.max_frame_buffer_bytes_*), min_frame_bytes_per_sec (limits.min_frame_bytes_per_sec), receive_window_bytes (server.receive_window_bytes)",
            limits.clone(),
        );
        for (limit, value) in [
            ("connections", settings.server.max_connections),
            (
                "connections_per_node",
                settings.server.max_connections_per_node,
            ),
            (
                "handshakes_in_progress",
                settings.server.max_handshakes_in_progress,
            ),
            (
                "streams_per_connection",
                settings.server.max_streams_per_connection as usize,
            ),
            (
                "in_flight_batches_per_connection",
                settings.server.max_in_flight_per_connection,
            ),
            ("sink_queue_batches", settings.limits.backpressure_threshold),
            (
                "dictionary_bytes_per_stream",
                settings.limits.dictionary.per_stream,
            ),
            (
                "dictionary_bytes_per_connection",
                settings.limits.dictionary.per_connection,
            ),
            ("dictionary_bytes_total", settings.limits.dictionary.total),
            (
                "frame_buffer_bytes_per_connection",
                settings.limits.frame_buffer.per_connection,
            ),
            (
                "frame_buffer_bytes_per_node",
                settings.limits.frame_buffer.per_node,
            ),
            (
                "frame_buffer_bytes_total",
                settings.limits.frame_buffer.total,
            ),
            (
                "min_frame_bytes_per_sec",
                settings.limits.frame_rate.min_bytes_per_sec,
            ),
            (
                "receive_window_bytes",
                usize::try_from(settings.server.receive_window).unwrap_or(usize::MAX),
            ),
        ] {
            limits
                .get_or_create(&LimitLabel::new(limit))
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        for t in [
            Throttle::SinkQueue,
            Throttle::InFlight,
            Throttle::FrameBuffer,
        ] {
            let label = LimitLabel::new(t.as_str());
            let _ = throttled.get_or_create(&label);
            let _ = throttled_seconds.get_or_create(&label);
        }
        Self {
            in_flight_batches,
            connection_in_flight,
            throttled,
            throttled_seconds,
        }
    }

    /// Counts a batch that waited `wait` for a limit.
    pub fn throttled(&self, limit: Throttle, wait: std::time::Duration) {
        let label = LimitLabel::new(limit.as_str());
        self.throttled.get_or_create(&label).inc();
        self.throttled_seconds
            .get_or_create(&label)
            .inc_by(wait.as_secs_f64());
    }
}
