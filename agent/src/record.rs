//! The payload of a spool record: one batch of points, each carrying its
//! metric name, metric type and labels (series ids are per connection and
//! do not survive a restart, so the spool keeps names).
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

/// The point count's flag of a payload whose points carry a type byte.
const TYPED: u32 = 1 << 31;

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

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Series are validated before they are spooled: names and values are
    // far below 64 KiB (the relay's limits are 256 and 1024 bytes).
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

/// Encodes a batch.
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

/// The number of points of an encoded batch (0 if malformed).
pub fn points_of(payload: &[u8]) -> u64 {
    payload.get(..4).map_or(0, |b| {
        (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & !TYPED).into()
    })
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
    fn u16(&mut self) -> Result<usize, DecodeError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()?;
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

/// Decodes a batch.
pub fn decode(payload: &[u8]) -> Result<Vec<OwnedPoint>, DecodeError> {
    let mut r = Reader(payload);
    let b = r.take(4)?;
    let count = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let typed = count & TYPED != 0;
    let n = (count & !TYPED) as usize;
    let mut out = Vec::with_capacity(n.min(payload.len() / 20));
    for _ in 0..n {
        let metric = r.str()?;
        let metric_type = if typed {
            MetricType::try_from(i32::from(r.take(1)?[0]))
                .map_err(|_| DecodeError("unknown metric type"))?
        } else {
            MetricType::Unspecified
        };
        let nl = usize::from(r.take(1)?[0]);
        let mut labels = Vec::with_capacity(nl);
        for _ in 0..nl {
            labels.push((r.str()?, r.str()?));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let pts = vec![
            OwnedPoint {
                metric: "DCGM_FI_DEV_GPU_TEMP".into(),
                metric_type: MetricType::Gauge,
                labels: vec![("gpu".into(), "0".into()), ("UUID".into(), "GPU-1".into())],
                time_unix_nano: 1_700_000_000_000_000_000,
                value: 41.0,
            },
            OwnedPoint {
                metric: "up".into(),
                metric_type: MetricType::Unspecified,
                labels: vec![],
                time_unix_nano: -5,
                value: -0.5,
            },
        ];
        let b = encode(&pts);
        assert_eq!(points_of(&b), 2);
        assert_eq!(decode(&b).unwrap(), pts);
        assert!(decode(&b[..b.len() - 1]).is_err());
        // Every type survives.
        for t in [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::Summary,
        ] {
            let p = vec![OwnedPoint {
                metric_type: t,
                ..pts[1].clone()
            }];
            assert_eq!(decode(&encode(&p)).unwrap(), p);
        }
    }

    /// A payload as agents before metric types wrote it: no type byte, the
    /// count's top bit clear.
    fn untyped_payload(points: &[OwnedPoint]) -> Vec<u8> {
        let mut out = (points.len() as u32).to_le_bytes().to_vec();
        for p in points {
            put_str(&mut out, &p.metric);
            out.push(p.labels.len() as u8);
            for (k, v) in &p.labels {
                put_str(&mut out, k);
                put_str(&mut out, v);
            }
            out.extend_from_slice(&p.time_unix_nano.to_le_bytes());
            out.extend_from_slice(&p.value.to_le_bytes());
        }
        out
    }

    #[test]
    fn a_record_written_before_metric_types_reads_as_unspecified() {
        let p = OwnedPoint {
            metric: "node_cpu_seconds_total".into(),
            metric_type: MetricType::Counter,
            labels: vec![("cpu".into(), "0".into())],
            time_unix_nano: 1_700_000_000_000_000_000,
            value: 12.5,
        };
        let old = untyped_payload(&[p.clone(), p.clone()]);
        assert_eq!(points_of(&old), 2);
        let got = decode(&old).unwrap();
        let want = OwnedPoint {
            metric_type: MetricType::Unspecified,
            ..p.clone()
        };
        assert_eq!(got, vec![want.clone(), want]);
        // The same points written now: one more byte each, and the flag.
        let new = encode(&[p.clone(), p.clone()]);
        assert_eq!(new.len(), old.len() + 2);
        assert_eq!(points_of(&new), 2);
        assert_eq!(decode(&new).unwrap(), vec![p.clone(), p]);
    }

    #[test]
    fn the_fuzz_seeds_are_payloads_of_both_kinds() {
        // An old record and a typed one (fuzz/seeds/spool_record/).
        let old = decode(include_bytes!("../../fuzz/seeds/spool_record/one_point")).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].metric_type, MetricType::Unspecified);
        let seed = include_bytes!("../../fuzz/seeds/spool_record/typed_points");
        let typed = decode(seed).unwrap();
        let types: Vec<MetricType> = typed.iter().map(|p| p.metric_type).collect();
        assert_eq!(types, [MetricType::Counter, MetricType::Unspecified]);
        assert_eq!(encode(&typed), seed);
    }

    #[test]
    fn a_type_byte_no_revision_wrote_is_an_error() {
        let p = OwnedPoint {
            metric: "m".into(),
            metric_type: MetricType::Gauge,
            labels: vec![],
            time_unix_nano: 0,
            value: 0.0,
        };
        let mut b = encode(&[p]);
        // After the count (4) and the name (2 + 1): the type byte.
        assert_eq!(b[7], MetricType::Gauge as u8);
        b[7] = 200;
        assert_eq!(decode(&b), Err(DecodeError("unknown metric type")));
    }
}
