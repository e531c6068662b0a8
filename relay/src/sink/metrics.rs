//! The sinks' metrics, registered in the relay's registry (prefix
//! `horizon_relay_`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Metrics of the sinks.
#[derive(Debug)]
pub struct SinkMetrics {
    /// Batches queued for the Parquet sink (all batchers).
    pub queue_batches: Gauge,
    /// Rows in the micro-batches being built (all batchers).
    pub buffered_rows: Gauge,
    /// Micro-batchers running (`parquet.batchers`).
    pub batchers: Gauge,
    /// Flushes cut and not yet stored (encoding, uploading or retrying).
    pub flushes_in_flight: Gauge,
    /// Rows of the flushes in flight.
    pub flushing_rows: Gauge,
    /// Object-store PUT requests in flight.
    pub puts_in_flight: Gauge,
    /// Parquet objects stored.
    pub objects_written: Counter,
    /// Bytes of Parquet stored.
    pub bytes_written: Counter,
    /// Points stored as Parquet rows (exported as `points_written`).
    pub points_written: Counter,
    /// Accepted points that could not be stored, relay closing with the
    /// store down (exported as `points_unstored`).
    pub points_unstored: Counter,
    /// Failed object-store writes (each retried).
    pub put_errors: Counter,
    /// Time to encode and store one flush.
    pub flush_seconds: Histogram,
    /// Points written to InfluxDB.
    pub influx_written: Counter,
    /// Points dropped for InfluxDB (buffer full, or unavailable while closing).
    pub influx_dropped: Counter,
    /// Points InfluxDB refused (4xx).
    pub influx_rejected: Counter,
    /// Retried InfluxDB requests.
    pub influx_retries: Counter,
    /// Points waiting for InfluxDB.
    pub influx_buffered: Gauge,
    /// Time to write one InfluxDB request, retries included.
    pub influx_write_seconds: Histogram,
}

impl SinkMetrics {
    /// Fresh metrics, registered in `r`.
    pub fn new(r: &mut Registry) -> Self {
        let m = Self {
            queue_batches: Gauge::default(),
            buffered_rows: Gauge::default(),
            batchers: Gauge::default(),
            flushes_in_flight: Gauge::default(),
            flushing_rows: Gauge::default(),
            puts_in_flight: Gauge::default(),
            objects_written: Counter::default(),
            bytes_written: Counter::default(),
            points_written: Counter::default(),
            points_unstored: Counter::default(),
            put_errors: Counter::default(),
            flush_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            influx_written: Counter::default(),
            influx_dropped: Counter::default(),
            influx_rejected: Counter::default(),
            influx_retries: Counter::default(),
            influx_buffered: Gauge::default(),
            influx_write_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        r.register(
            "sink_queue_batches",
            "Batches queued for the Parquet micro-batchers, all together (backpressure at limits.backpressure_threshold)",
            m.queue_batches.clone(),
        );
        r.register(
            "sink_buffered_rows",
            "Rows in the micro-batches being built, all batchers together",
            m.buffered_rows.clone(),
        );
        r.register(
            "sink_batchers",
            "Parquet micro-batchers (parquet.batchers)",
            m.batchers.clone(),
        );
        r.register(
            "sink_flushes_in_flight",
            "Micro-batch flushes cut and not yet stored: encoding, uploading or retrying (at most parquet.batchers + parquet.max_concurrent_puts)",
            m.flushes_in_flight.clone(),
        );
        r.register(
            "sink_flushing_rows",
            "Rows of the flushes in flight (not yet stored, not yet acked in durable mode)",
            m.flushing_rows.clone(),
        );
        r.register(
            "object_puts_in_flight",
            "Object-store PUT requests in flight (at most parquet.max_concurrent_puts)",
            m.puts_in_flight.clone(),
        );
        r.register(
            "objects_written",
            "Parquet objects stored in the object store (S3 or local directory)",
            m.objects_written.clone(),
        );
        r.register(
            "object_bytes_written",
            "Bytes of Parquet stored in the object store (S3 or local directory)",
            m.bytes_written.clone(),
        );
        r.register(
            "points_written",
            "Points stored as Parquet rows",
            m.points_written.clone(),
        );
        r.register(
            "points_unstored",
            "Accepted points that could not be stored (relay closing while the store was down)",
            m.points_unstored.clone(),
        );
        r.register(
            "object_put_errors",
            "Failed object-store writes (each is retried)",
            m.put_errors.clone(),
        );
        // The names before the local directory was counted too; deprecated,
        // exported for one more release.
        r.register(
            "s3_objects_written",
            "Deprecated: use horizon_relay_objects_written_total (same value)",
            m.objects_written.clone(),
        );
        r.register(
            "s3_bytes_written",
            "Deprecated: use horizon_relay_object_bytes_written_total (same value)",
            m.bytes_written.clone(),
        );
        r.register(
            "s3_put_errors",
            "Deprecated: use horizon_relay_object_put_errors_total (same value)",
            m.put_errors.clone(),
        );
        r.register(
            "sink_flush_seconds",
            "Time to encode and store one micro-batch flush, from its cut to its last object stored",
            m.flush_seconds.clone(),
        );
        r.register(
            "influxdb_written_points",
            "Points written to InfluxDB",
            m.influx_written.clone(),
        );
        r.register(
            "influxdb_dropped_points",
            "Points dropped for InfluxDB only: buffer full, or InfluxDB down while closing",
            m.influx_dropped.clone(),
        );
        r.register(
            "influxdb_rejected_points",
            "Points InfluxDB refused with a 4xx answer",
            m.influx_rejected.clone(),
        );
        r.register(
            "influxdb_retries",
            "InfluxDB write requests retried",
            m.influx_retries.clone(),
        );
        r.register(
            "influxdb_buffered_points",
            "Points waiting to be written to InfluxDB",
            m.influx_buffered.clone(),
        );
        r.register(
            "influxdb_write_seconds",
            "Time to write one InfluxDB request, retries included",
            m.influx_write_seconds.clone(),
        );
        m
    }
}
