//! What a client sends and gets back: [`Point`]s in a [`Batch`], and the
//! batch's ack ([`Acked`]).

use std::time::Duration;

use super::series::SeriesId;
use crate::proto::BatchAck;

/// One point of a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Its series.
    pub series: SeriesId,
    /// Unix time in nanoseconds.
    pub time_unix_nano: i64,
    /// The value.
    pub value: f64,
}

impl Point {
    /// A point at the given time.
    pub fn new(series: SeriesId, time_unix_nano: i64, value: f64) -> Self {
        Self {
            series,
            time_unix_nano,
            value,
        }
    }

    /// A point stamped with the current time.
    pub fn now(series: SeriesId, value: f64) -> Self {
        Self::new(series, crate::clock::unix_nanos_now(), value)
    }
}

/// A batch of points, sent and acked as one unit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// The points, in any order.
    pub points: Vec<Point>,
}

/// An acked batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Acked {
    /// The relay's ack.
    pub ack: BatchAck,
    /// From the last time the batch was written to the stream to its ack.
    pub latency: Duration,
    /// How many times the batch was sent (1 unless it was resent after a reconnect).
    pub attempts: u32,
}
