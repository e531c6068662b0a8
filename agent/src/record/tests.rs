use super::sample::{Rng, dcgm_scrape, node_scrape};
use super::*;

fn pts() -> Vec<OwnedPoint> {
    vec![
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
        OwnedPoint {
            metric: "DCGM_FI_DEV_GPU_TEMP".into(),
            metric_type: MetricType::Gauge,
            labels: vec![("gpu".into(), "0".into()), ("UUID".into(), "GPU-1".into())],
            time_unix_nano: 1_700_000_001_000_000_000,
            value: f64::MAX,
        },
    ]
}

#[test]
fn round_trips() {
    let pts = pts();
    let b = encode(&pts);
    assert_eq!(&b[..4], &0xFFFF_0002u32.to_le_bytes());
    assert_eq!(points_of(&b), 3);
    assert_eq!(summary_of(&b), Some((3, Some(-5))));
    assert_eq!(decode(&b).unwrap(), pts);
    for cut in [1, 10, b.len() - 20] {
        assert!(decode(&b[..b.len() - cut]).is_err(), "cut {cut}");
    }
    assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    assert_eq!(summary_of(&encode(&[])), Some((0, None)));
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

#[test]
fn a_header_that_lies_is_an_error() {
    let b = encode(&pts());
    let mut more = b.clone();
    more[4] = 4; // four points declared, three in the body
    assert!(decode(&more).is_err());
    let mut older = b.clone();
    older[8] ^= 1; // another oldest time
    assert_eq!(
        decode(&older),
        Err(DecodeError("oldest time differs from the header"))
    );
    let mut raw = b;
    raw[16] ^= 1; // another body length
    assert!(decode(&raw).is_err());
}

/// A payload as agents before metric types wrote it: no type byte, the
/// count's top bit clear.
fn untyped_payload(points: &[OwnedPoint]) -> Vec<u8> {
    let mut out = (points.len() as u32).to_le_bytes().to_vec();
    let put = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    for p in points {
        put(&mut out, &p.metric);
        out.push(p.labels.len() as u8);
        for (k, v) in &p.labels {
            put(&mut out, k);
            put(&mut out, v);
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
    assert_eq!(summary_of(&old), Some((2, Some(p.time_unix_nano))));
    let got = decode(&old).unwrap();
    let want = OwnedPoint {
        metric_type: MetricType::Unspecified,
        ..p.clone()
    };
    assert_eq!(got, vec![want.clone(), want]);
    // The same points in the typed first format: one more byte each.
    let typed = v1::encode(&[p.clone(), p.clone()]);
    assert_eq!(typed.len(), old.len() + 2);
    assert_eq!(points_of(&typed), 2);
    assert_eq!(decode(&typed).unwrap(), vec![p.clone(), p]);
}

#[test]
fn the_fuzz_seeds_are_payloads_of_the_first_format() {
    // An old record and a typed one (fuzz/seeds/spool_record/).
    let old = decode(include_bytes!("../../../fuzz/seeds/spool_record/one_point")).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].metric_type, MetricType::Unspecified);
    let seed = include_bytes!("../../../fuzz/seeds/spool_record/typed_points");
    let typed = decode(seed).unwrap();
    let types: Vec<MetricType> = typed.iter().map(|p| p.metric_type).collect();
    assert_eq!(types, [MetricType::Counter, MetricType::Unspecified]);
    assert_eq!(v1::encode(&typed), seed);
    // Written again now, they read back the same.
    assert_eq!(decode(&encode(&typed)).unwrap(), typed);
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
    let mut b = v1::encode(&[p]);
    // After the count (4) and the name (2 + 1): the type byte.
    assert_eq!(b[7], MetricType::Gauge as u8);
    b[7] = 200;
    assert_eq!(decode(&b), Err(DecodeError("unknown metric type")));
}

/// Bytes per point of a spool filled by the node of issue 30 (dcgm-exporter
/// 8 GPUs × 60 fields every second, node_exporter every 10 s), one record
/// per scrape, with the spool's framing (16 bytes a record).
fn bytes_per_point(encode: fn(&[OwnedPoint]) -> Vec<u8>) -> (f64, f64) {
    bytes_per_point_of(encode, |_| {})
}

fn bytes_per_point_of(
    encode: fn(&[OwnedPoint]) -> Vec<u8>,
    mut change: impl FnMut(&mut Vec<OwnedPoint>),
) -> (f64, f64) {
    let mut rng = Rng::new(7);
    let (mut dcgm, mut dcgm_points, mut node, mut node_points) = (0, 0, 0, 0);
    for tick in 0..120u64 {
        let time = 1_700_000_000_000_000_000 + tick as i64 * 1_000_000_000;
        let mut d = dcgm_scrape(8, time, tick, &mut rng);
        change(&mut d);
        dcgm += encode(&d).len() + 16;
        dcgm_points += d.len();
        if tick % 10 == 0 {
            let mut n = node_scrape(time, tick, &mut rng);
            change(&mut n);
            node += encode(&n).len() + 16;
            node_points += n.len();
        }
    }
    (
        dcgm as f64 / dcgm_points as f64,
        (dcgm + node) as f64 / (dcgm_points + node_points) as f64,
    )
}

#[test]
fn a_dcgm_node_spools_at_most_20_bytes_a_point() {
    let (dcgm, all) = bytes_per_point(encode);
    let (dcgm_v1, all_v1) = bytes_per_point(v1::encode);
    // The worst case for values: all 64 bits random (no exporter's are).
    let mut noise = Rng::new(9);
    let (dcgm_rand, _) = bytes_per_point_of(encode, |pts| {
        for p in pts {
            p.value = f64::from_bits(noise.next_u64() >> 2);
        }
    });
    println!(
        "bytes per point: compact dcgm {dcgm:.1}, with node_exporter {all:.1}; \
         first format dcgm {dcgm_v1:.1}, with node_exporter {all_v1:.1}; \
         compact dcgm with random 64-bit values {dcgm_rand:.1}"
    );
    assert!(
        dcgm <= 20.0 && all <= 20.0,
        "{dcgm:.1} / {all:.1} bytes a point"
    );
    assert!(dcgm_v1 > 150.0, "the first format spells series out");
    // And what is written reads back.
    let mut rng = Rng::new(3);
    let d = dcgm_scrape(8, 1, 1, &mut rng);
    assert_eq!(decode(&encode(&d)).unwrap(), d);
    let n = node_scrape(1, 1, &mut rng);
    assert_eq!(decode(&encode(&n)).unwrap(), n);
}
