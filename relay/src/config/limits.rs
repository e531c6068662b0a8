//! `limits`: what one batch, series and point may be, and the memory that
//! frames being read and series dictionaries may hold.

use std::time::Duration;

use horizon_shared::config::check::{between, not_below, positive};
use horizon_shared::config::{ConfigError, invalid};
use horizon_shared::model::{SeriesLimits, TimeWindow};
use serde::Deserialize;

/// `limits`: what one batch, series and point may be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Relay-wide cap on live series (all nodes together).
    pub max_cardinality: usize,
    /// Most points in one batch; larger batches are rejected as too large.
    pub max_batch_size: usize,
    /// Batches queued for the sinks beyond which streams stop being read.
    pub backpressure_threshold: usize,
    /// Largest frame, in bytes; a larger length prefix resets the stream.
    pub max_frame_bytes: usize,
    /// Series-dictionary ids one stream may use (ids are `0..this`).
    pub max_series_per_stream: u32,
    /// Memory one stream's series dictionary may hold, in bytes (labels,
    /// names and bookkeeping); definitions beyond it are refused.
    pub max_dictionary_bytes_per_stream: usize,
    /// Memory the series dictionaries of one connection's streams may hold
    /// together, in bytes.
    pub max_dictionary_bytes_per_connection: usize,
    /// Memory the series dictionaries of all connections may hold together,
    /// in bytes.
    pub max_dictionary_bytes_total: usize,
    /// Bytes of frames being read that one connection's streams may hold
    /// together; a stream whose next frame does not fit waits (QUIC flow
    /// control holds the agent). At least `max_frame_bytes`.
    pub max_frame_buffer_bytes_per_connection: usize,
    /// Bytes of frames being read that one node's connections may hold
    /// together (a node's share of the relay's), so that one identity
    /// cannot take the relay-wide bound whatever its number of connections.
    /// Unset: a quarter of `max_frame_buffer_bytes_total`, and at least
    /// `max_frame_buffer_bytes_per_connection`.
    pub max_frame_buffer_bytes_per_node: Option<usize>,
    /// Bytes of frames being read that all connections may hold together.
    pub max_frame_buffer_bytes_total: usize,
    /// The rate a frame's payload must keep once it has room in the frame
    /// buffers, in bytes a second: each `frame_read_timeout_secs` must bring
    /// this many bytes a second of it (or the rest of the frame).
    pub min_frame_bytes_per_sec: usize,
    /// The window of `min_frame_bytes_per_sec`, in seconds: a frame that has
    /// room and does not bring `min_frame_bytes_per_sec ×` this many bytes
    /// (or its rest) within it, counted from when it got room or met the
    /// previous window's quota, has its stream ended (`FRAME_TIMEOUT`), so
    /// a stalling or trickling sender cannot hold room others need.
    pub frame_read_timeout_secs: u64,
    /// Most labels on one series.
    pub max_labels_per_series: usize,
    /// Longest metric name, bytes.
    pub max_metric_name_bytes: usize,
    /// Longest label key, bytes.
    pub max_label_key_bytes: usize,
    /// Longest label value, bytes.
    pub max_label_value_bytes: usize,
    /// Oldest accepted point, seconds before the relay's clock.
    pub max_point_age_secs: u64,
    /// Furthest accepted point, seconds after the relay's clock.
    pub max_future_skew_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let series = SeriesLimits::default();
        Self {
            max_cardinality: 100_000,
            max_batch_size: 1000,
            backpressure_threshold: 5000,
            max_frame_bytes: horizon_shared::codec::DEFAULT_MAX_FRAME_BYTES,
            max_series_per_stream: 65_536,
            max_dictionary_bytes_per_stream: 16 << 20,
            max_dictionary_bytes_per_connection: 32 << 20,
            max_dictionary_bytes_total: 1 << 30,
            max_frame_buffer_bytes_per_connection: 16 << 20,
            max_frame_buffer_bytes_per_node: None,
            max_frame_buffer_bytes_total: 256 << 20,
            min_frame_bytes_per_sec: 16 << 10,
            frame_read_timeout_secs: 5,
            max_labels_per_series: series.max_labels,
            max_metric_name_bytes: series.max_metric_len,
            max_label_key_bytes: series.max_label_key_len,
            max_label_value_bytes: series.max_label_value_len,
            max_point_age_secs: 7 * 24 * 3600,
            max_future_skew_secs: 600,
        }
    }
}

/// Bounds on series dictionary memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictionaryLimits {
    /// One stream's dictionary.
    pub per_stream: usize,
    /// One connection's dictionaries together.
    pub per_connection: usize,
    /// Every dictionary of the relay together.
    pub total: usize,
}

/// Bounds on the bytes of frames being read (a frame's bytes are held from
/// its length prefix until its batch has been processed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameBufferLimits {
    /// One connection's streams together.
    pub per_connection: usize,
    /// One node's connections together.
    pub per_node: usize,
    /// Every connection together.
    pub total: usize,
}

/// How fast a frame that has room must arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRate {
    /// Bytes a second, over each window.
    pub min_bytes_per_sec: usize,
    /// The window: `min_bytes_per_sec ×` this must arrive within it.
    pub window: Duration,
}

/// The `limits` section after validation.
#[derive(Debug, Clone)]
pub struct LimitsSettings {
    /// Relay-wide cap on live series.
    pub max_cardinality: usize,
    /// Points per batch.
    pub max_batch_size: usize,
    /// Batches queued for the Parquet sink before streams stop being read.
    pub backpressure_threshold: usize,
    /// Frame size cap.
    pub max_frame_bytes: usize,
    /// Dictionary ids per stream.
    pub max_series_per_stream: u32,
    /// Series dictionary memory bounds.
    pub dictionary: DictionaryLimits,
    /// Bounds on the bytes of frames being read.
    pub frame_buffer: FrameBufferLimits,
    /// How fast a frame's payload must arrive once it has buffer room.
    pub frame_rate: FrameRate,
    /// Series validation limits.
    pub series_limits: SeriesLimits,
    /// Accepted timestamp window.
    pub time_window: TimeWindow,
}

impl LimitsConfig {
    /// Checks the section: every bound positive, the memory bounds ordered
    /// stream <= connection <= total.
    pub fn validate(&self) -> Result<LimitsSettings, ConfigError> {
        positive("limits.max_cardinality", self.max_cardinality)?;
        positive("limits.max_batch_size", self.max_batch_size)?;
        positive("limits.backpressure_threshold", self.backpressure_threshold)?;
        between(
            "limits.max_frame_bytes",
            self.max_frame_bytes,
            1024,
            64 * 1024 * 1024,
        )?;
        positive("limits.max_series_per_stream", self.max_series_per_stream)?;
        self.validate_memory()?;
        between(
            "limits.frame_read_timeout_secs",
            self.frame_read_timeout_secs,
            1,
            300,
        )?;
        between(
            "limits.min_frame_bytes_per_sec",
            self.min_frame_bytes_per_sec,
            1,
            1 << 30,
        )?;
        positive("limits.max_metric_name_bytes", self.max_metric_name_bytes)?;
        positive("limits.max_label_key_bytes", self.max_label_key_bytes)?;
        positive("limits.max_label_value_bytes", self.max_label_value_bytes)?;
        positive("limits.max_point_age_secs", self.max_point_age_secs)?;
        Ok(LimitsSettings {
            max_cardinality: self.max_cardinality,
            max_batch_size: self.max_batch_size,
            backpressure_threshold: self.backpressure_threshold,
            max_frame_bytes: self.max_frame_bytes,
            max_series_per_stream: self.max_series_per_stream,
            dictionary: DictionaryLimits {
                per_stream: self.max_dictionary_bytes_per_stream,
                per_connection: self.max_dictionary_bytes_per_connection,
                total: self.max_dictionary_bytes_total,
            },
            frame_buffer: FrameBufferLimits {
                per_connection: self.max_frame_buffer_bytes_per_connection,
                per_node: self.frame_buffer_per_node(),
                total: self.max_frame_buffer_bytes_total,
            },
            frame_rate: FrameRate {
                min_bytes_per_sec: self.min_frame_bytes_per_sec,
                window: Duration::from_secs(self.frame_read_timeout_secs),
            },
            series_limits: SeriesLimits {
                max_metric_len: self.max_metric_name_bytes,
                max_labels: self.max_labels_per_series,
                max_label_key_len: self.max_label_key_bytes,
                max_label_value_len: self.max_label_value_bytes,
            },
            time_window: TimeWindow {
                max_age_ns: secs_to_ns(self.max_point_age_secs),
                max_future_ns: secs_to_ns(self.max_future_skew_secs),
            },
        })
    }

    /// The dictionary and frame-buffer bounds, each at least the one below it.
    fn validate_memory(&self) -> Result<(), ConfigError> {
        positive(
            "limits.max_dictionary_bytes_per_stream",
            self.max_dictionary_bytes_per_stream,
        )?;
        not_below(
            "limits.max_dictionary_bytes_per_connection",
            self.max_dictionary_bytes_per_connection,
            "limits.max_dictionary_bytes_per_stream",
            self.max_dictionary_bytes_per_stream,
        )?;
        not_below(
            "limits.max_dictionary_bytes_total",
            self.max_dictionary_bytes_total,
            "limits.max_dictionary_bytes_per_connection",
            self.max_dictionary_bytes_per_connection,
        )?;
        not_below(
            "limits.max_frame_buffer_bytes_per_connection",
            self.max_frame_buffer_bytes_per_connection,
            "limits.max_frame_bytes",
            self.max_frame_bytes,
        )
        .map_err(|e| e.because("or no frame of the largest size could be read"))?;
        not_below(
            "limits.max_frame_buffer_bytes_total",
            self.max_frame_buffer_bytes_total,
            "limits.max_frame_buffer_bytes_per_connection",
            self.max_frame_buffer_bytes_per_connection,
        )?;
        if let Some(per_node) = self.max_frame_buffer_bytes_per_node {
            not_below(
                "limits.max_frame_buffer_bytes_per_node",
                per_node,
                "limits.max_frame_buffer_bytes_per_connection",
                self.max_frame_buffer_bytes_per_connection,
            )?;
            not_below(
                "limits.max_frame_buffer_bytes_total",
                self.max_frame_buffer_bytes_total,
                "limits.max_frame_buffer_bytes_per_node",
                per_node,
            )?;
        }
        if u32::try_from(self.max_frame_buffer_bytes_total).is_err() {
            return Err(invalid(
                "limits.max_frame_buffer_bytes_total",
                format!("{} must be under 4 GiB", self.max_frame_buffer_bytes_total),
            ));
        }
        Ok(())
    }
}

impl LimitsConfig {
    /// `max_frame_buffer_bytes_per_node`, or its default: a quarter of the
    /// relay's bound, at least a connection's.
    fn frame_buffer_per_node(&self) -> usize {
        self.max_frame_buffer_bytes_per_node.unwrap_or(
            (self.max_frame_buffer_bytes_total / 4).max(self.max_frame_buffer_bytes_per_connection),
        )
    }
}

fn secs_to_ns(s: u64) -> i64 {
    i64::try_from(s)
        .unwrap_or(i64::MAX / 1_000_000_000)
        .saturating_mul(1_000_000_000)
}
