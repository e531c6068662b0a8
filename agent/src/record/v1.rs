//! The first payload format, per point with its series spelled out
//! (agents before the compact format wrote it; still read, so a spool
//! left by an older agent replays after an upgrade):
//!
//! ```text
//! points: u32 LE, its top bit set (TYPED), then per point:
//!   metric: u16 LE length + UTF-8, type: u8 (the protocol's MetricType),
//!   labels: u8 count, per label: key: u16 + UTF-8, value: u16 + UTF-8;
//!   time: i64 LE (Unix ns); value: f64 LE
//! ```
//!
//! Records written before metric types (the count's top bit clear) have no
//! type byte; their points read as of unspecified type. No batch comes near
//! 2^31 points (a record is at most 64 MiB), so the bit is free.

use horizon_shared::proto::MetricType;

use super::{DecodeError, OwnedPoint, Reader};

/// The point count's flag of a payload whose points carry a type byte.
pub(super) const TYPED: u32 = 1 << 31;

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

/// Encodes a batch in this format (kept to write old spools in tests and
/// fixtures; the agent writes [`super::encode`]'s format).
pub fn encode(points: &[OwnedPoint]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + points.len() * 64);
    let count = u32::try_from(points.len())
        .ok()
        .filter(|n| n & TYPED == 0)
        .unwrap_or(TYPED - 1);
    out.extend_from_slice(&(count | TYPED).to_le_bytes());
    for p in points.iter().take(count as usize) {
        put_str(&mut out, &p.metric);
        out.push(p.metric_type as u8);
        let n = p.labels.len().min(255);
        out.push(n as u8);
        for (k, v) in &p.labels[..n] {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        out.extend_from_slice(&p.time_unix_nano.to_le_bytes());
        out.extend_from_slice(&p.value.to_le_bytes());
    }
    out
}

/// The declared point count of a payload in this format.
pub(super) fn points_of(count: u32) -> u64 {
    (count & !TYPED).into()
}

/// Decodes a payload in this format (`count` is its first four bytes).
pub(super) fn decode(payload: &[u8]) -> Result<Vec<OwnedPoint>, DecodeError> {
    let mut r = Reader(payload);
    let count = r.u32()?;
    let typed = count & TYPED != 0;
    let n = (count & !TYPED) as usize;
    let mut out = Vec::with_capacity(n.min(payload.len() / 20));
    for _ in 0..n {
        let metric = r.str16()?;
        let metric_type = if typed {
            super::metric_type(r.take(1)?[0])?
        } else {
            MetricType::Unspecified
        };
        let nl = usize::from(r.take(1)?[0]);
        let mut labels = Vec::with_capacity(nl);
        for _ in 0..nl {
            labels.push((r.str16()?, r.str16()?));
        }
        let time_unix_nano = r.u64()? as i64;
        let value = f64::from_bits(r.u64()?);
        out.push(OwnedPoint {
            metric,
            metric_type,
            labels,
            time_unix_nano,
            value,
        });
    }
    if !r.0.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(out)
}
