//! The compact payload format (version 2): the batch's strings and series
//! once, then its points in columns, compressed with zstd.
//!
//! ```text
//! header, 24 bytes:
//!   magic: u32 LE 0xFFFF_0002 (a v1 payload's first four bytes are its
//!          point count, never above 2^22: a record is at most 64 MiB)
//!   points: u32 LE; oldest: i64 LE (earliest time, Unix ns; i64::MAX
//!   with no points); raw: u32 LE (length of the body before compression)
//! body, one zstd frame of:
//!   strings: varint count, each varint length + UTF-8 (every metric
//!            name, label key and value once)
//!   series:  varint count, each: metric (string index), type: u8 (the
//!            protocol's MetricType), varint label count, per label key
//!            and value (string indices)
//!   per point its series index (varint)
//!   times:   the first zigzag varint, then each one's difference from
//!            the one before it (zigzag varint; 0 within a scrape)
//!   values:  f64 bits in eight byte planes (byte 0 of every value, then
//!            byte 1, ...), which zstd packs far better than the values
//!            side by side
//! ```
//!
//! The header carries what the spool keeps per record (points, oldest
//! time), so it reads a segment at open without decompressing it.

use std::collections::HashMap;

use super::{DecodeError, OwnedPoint, Reader};

/// The first four bytes of a compact payload.
pub(super) const MAGIC: u32 = 0xFFFF_0002;
const HEADER: usize = 24;
/// Largest body a payload may declare (a record is at most 64 MiB; its
/// body compresses, so allow a generous multiple).
const MAX_RAW: usize = 256 << 20;
const LEVEL: i32 = 3;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, u64>,
    list: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, s: &'a str) -> u64 {
        *self.ids.entry(s).or_insert_with(|| {
            self.list.push(s);
            (self.list.len() - 1) as u64
        })
    }
}

/// A series: metric, type and labels.
type SeriesKey<'a> = (&'a str, u8, &'a [(String, String)]);

/// Encodes a batch.
pub fn encode(points: &[OwnedPoint]) -> Vec<u8> {
    let mut strings = Interner::default();
    let mut series_ids: HashMap<SeriesKey<'_>, u64> = HashMap::new();
    let mut series: Vec<u8> = Vec::new();
    let mut n_series = 0u64;
    let mut index = Vec::with_capacity(points.len() * 2);
    for p in points {
        let key = (p.metric.as_str(), p.metric_type as u8, p.labels.as_slice());
        let id = *series_ids.entry(key).or_insert_with(|| {
            varint(&mut series, strings.id(&p.metric));
            series.push(p.metric_type as u8);
            varint(&mut series, p.labels.len() as u64);
            for (k, v) in &p.labels {
                varint(&mut series, strings.id(k));
                varint(&mut series, strings.id(v));
            }
            n_series += 1;
            n_series - 1
        });
        varint(&mut index, id);
    }
    let mut body = Vec::with_capacity(series.len() + index.len() + points.len() * 10 + 1024);
    varint(&mut body, strings.list.len() as u64);
    for s in &strings.list {
        varint(&mut body, s.len() as u64);
        body.extend_from_slice(s.as_bytes());
    }
    varint(&mut body, n_series);
    body.extend_from_slice(&series);
    body.extend_from_slice(&index);
    let mut prev = 0i64;
    for p in points {
        varint(&mut body, zigzag(p.time_unix_nano.wrapping_sub(prev)));
        prev = p.time_unix_nano;
    }
    for b in 0..8 {
        body.extend(points.iter().map(|p| p.value.to_bits().to_le_bytes()[b]));
    }
    let oldest = points.iter().map(|p| p.time_unix_nano).min();
    let mut out = Vec::with_capacity(HEADER + body.len() / 3);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(points.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&oldest.unwrap_or(i64::MAX).to_le_bytes());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    // Compressing into memory cannot fail at a valid level.
    let z = zstd::bulk::compress(&body, LEVEL).unwrap_or_default();
    out.extend_from_slice(&z);
    out
}

/// The point count and oldest time a compact payload's header declares.
pub(super) fn header(payload: &[u8]) -> Option<(u64, Option<i64>)> {
    let mut r = Reader(payload);
    let _magic = r.u32().ok()?;
    let points = r.u32().ok()?;
    let oldest = r.u64().ok()? as i64;
    Some((points.into(), (oldest != i64::MAX).then_some(oldest)))
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn index(&mut self, len: usize) -> Result<usize, DecodeError> {
        usize::try_from(self.varint()?)
            .ok()
            .filter(|&i| i < len)
            .ok_or(DecodeError("index out of range"))
    }
}

/// Decodes a compact payload.
pub(super) fn decode(payload: &[u8]) -> Result<Vec<OwnedPoint>, DecodeError> {
    let mut h = Reader(payload);
    let _magic = h.u32()?;
    let n = h.u32()? as usize;
    let oldest = h.u64()? as i64;
    let raw = h.u32()? as usize;
    if raw > MAX_RAW || n > raw / 9 {
        return Err(DecodeError("implausible sizes"));
    }
    let body = zstd::bulk::decompress(h.0, raw).map_err(|_| DecodeError("bad zstd frame"))?;
    if body.len() != raw {
        return Err(DecodeError("body length differs from the header"));
    }
    let mut r = Reader(&body);
    let n_strings = usize::try_from(r.varint()?).unwrap_or(usize::MAX);
    if n_strings > raw {
        return Err(DecodeError("implausible sizes"));
    }
    let mut strings = Vec::with_capacity(n_strings);
    for _ in 0..n_strings {
        let len = usize::try_from(r.varint()?).unwrap_or(usize::MAX);
        let s = std::str::from_utf8(r.take(len)?).map_err(|_| DecodeError("invalid UTF-8"))?;
        strings.push(s);
    }
    let n_series = usize::try_from(r.varint()?).unwrap_or(usize::MAX);
    if n_series > raw {
        return Err(DecodeError("implausible sizes"));
    }
    let mut series = Vec::with_capacity(n_series);
    for _ in 0..n_series {
        let metric = strings[r.index(n_strings)?];
        let metric_type = super::metric_type(r.take(1)?[0])?;
        let nl = usize::try_from(r.varint()?).unwrap_or(usize::MAX);
        if nl > raw {
            return Err(DecodeError("implausible sizes"));
        }
        let mut labels = Vec::with_capacity(nl);
        for _ in 0..nl {
            let k = strings[r.index(n_strings)?];
            let v = strings[r.index(n_strings)?];
            labels.push((k, v));
        }
        series.push((metric, metric_type, labels));
    }
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(r.index(n_series)?);
    }
    let mut times = Vec::with_capacity(n);
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(unzigzag(r.varint()?));
        times.push(prev);
    }
    let planes = r.take(n * 8)?;
    if !r.0.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    if times.iter().copied().min().unwrap_or(i64::MAX) != oldest {
        return Err(DecodeError("oldest time differs from the header"));
    }
    let mut out = Vec::with_capacity(n);
    for (i, (&id, &time_unix_nano)) in ids.iter().zip(&times).enumerate() {
        let mut bits = [0u8; 8];
        for (b, byte) in bits.iter_mut().enumerate() {
            *byte = planes[b * n + i];
        }
        let (metric, metric_type, labels) = &series[id];
        out.push(OwnedPoint {
            metric: (*metric).to_owned(),
            metric_type: *metric_type,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            time_unix_nano,
            value: f64::from_bits(u64::from_le_bytes(bits)),
        });
    }
    Ok(out)
}
