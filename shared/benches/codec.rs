//! Frame decode throughput, in points per second.
//!
//! `cargo bench -p horizon-shared --bench codec`

#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use horizon_shared::client::{Batch, Point, SeriesRegistry, StreamEncoder};
use horizon_shared::codec;
use horizon_shared::proto::AgentFrame;

/// A steady-state frame: 1000 points of 100 already-defined series.
fn steady_frame() -> Vec<u8> {
    let mut reg = SeriesRegistry::default();
    let series: Vec<_> = (0..100)
        .map(|i| {
            reg.register(
                "gpu_utilization_percent",
                &[("gpu", &(i % 8).to_string()), ("host_slot", &i.to_string())],
            )
            .unwrap()
        })
        .collect();
    let t = 1_800_000_000_000_000_000i64;
    let batch = |t: i64| Batch {
        points: (0..1000)
            .map(|i| {
                Point::new(
                    series[i % 100],
                    t + (i / 100) as i64 * 1_000_000_000,
                    i as f64,
                )
            })
            .collect(),
    };
    let mut enc = StreamEncoder::new();
    let mut first = BytesMut::new();
    enc.encode(1, &batch(t), &reg, &mut first); // defines the series
    let mut buf = BytesMut::new();
    enc.encode(2, &batch(t + 10_000_000_000), &reg, &mut buf);
    buf.to_vec()
}

fn bench(c: &mut Criterion) {
    let frame = steady_frame();
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decode_1000_points", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&frame[..]);
            codec::decode::<AgentFrame>(&mut buf, codec::DEFAULT_MAX_FRAME_BYTES)
                .unwrap()
                .unwrap()
        })
    });
    g.finish();
    println!(
        "steady-state frame: {} bytes for 1000 points ({:.1} bytes/point)",
        frame.len(),
        frame.len() as f64 / 1000.0
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
