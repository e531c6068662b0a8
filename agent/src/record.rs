//! The payload of a spool record: one batch of points, each with its
//! metric name, metric type and labels (series ids are per connection and
//! do not survive a restart, so the spool keeps names).
//!
//! The agent writes the [compact](compact) format: the batch's series once
//! and its times and values in columns, compressed with zstd (about 12
//! bytes a point for dcgm-exporter, against about 200 spelled out). It
//! reads both that and the [first](v1) format, told apart by the first four
//! bytes, so a spool left by an older agent replays after an upgrade.

use horizon_shared::proto::MetricType;

mod compact;
#[doc(hidden)]
pub mod sample;
pub mod v1;

/// A point with its series spelled out.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedPoint {
    /// Metric name.
    pub metric: String,
    /// Metric type (unspecified when the source does not know it).
    pub metric_type: MetricType,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Unix time, nanoseconds.
    pub time_unix_nano: i64,
    /// Value.
    pub value: f64,
}

/// A payload that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed spool payload: {0}")]
pub struct DecodeError(&'static str);

/// Encodes a batch (in the compact format).
pub fn encode(points: &[OwnedPoint]) -> Vec<u8> {
    compact::encode(points)
}

fn first_word(payload: &[u8]) -> Option<u32> {
    payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The number of points of an encoded batch (0 if malformed).
pub fn points_of(payload: &[u8]) -> u64 {
    match first_word(payload) {
        Some(compact::MAGIC) => compact::header(payload).map_or(0, |h| h.0),
        Some(count) => v1::points_of(count),
        None => 0,
    }
}

/// The number of points and earliest time (Unix ns) of an encoded batch,
/// read from a compact payload's header without decompressing it;
/// `None` if the payload does not decode.
pub fn summary_of(payload: &[u8]) -> Option<(u64, Option<i64>)> {
    match first_word(payload)? {
        compact::MAGIC => compact::header(payload),
        _ => v1::decode(payload)
            .ok()
            .map(|p| (p.len() as u64, p.iter().map(|p| p.time_unix_nano).min())),
    }
}

/// Decodes a batch of either format.
pub fn decode(payload: &[u8]) -> Result<Vec<OwnedPoint>, DecodeError> {
    match first_word(payload) {
        Some(compact::MAGIC) => compact::decode(payload),
        Some(_) => v1::decode(payload),
        None => Err(DecodeError("truncated")),
    }
}

fn metric_type(b: u8) -> Result<MetricType, DecodeError> {
    MetricType::try_from(i32::from(b)).map_err(|_| DecodeError("unknown metric type"))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn str16(&mut self) -> Result<String, DecodeError> {
        let b = self.take(2)?;
        let n = usize::from(u16::from_le_bytes([b[0], b[1]]));
        std::str::from_utf8(self.take(n)?)
            .map(str::to_owned)
            .map_err(|_| DecodeError("invalid UTF-8"))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests;
