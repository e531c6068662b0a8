//! Raw-object encoder throughput: one relay flush of 200,000 rows (100 nodes
//! × 1000 series, two points each, in the order a relay receives them:
//! node by node, a scrape at a time) sorted and encoded as one Parquet
//! object, snappy, as the relay's Parquet sink does.
//!
//! `cargo bench -p horizon-shared --features raw --bench raw_encode`
//!
//! Two benchmarks: `encode_flush` (labels coded from their text), and
//! `encode_flush_sets` (labels coded once per series in a `LabelSets`, as
//! the relay does; the flush's rows are looked up in the series' slots,
//! which the timing includes).

#![allow(clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use horizon_shared::model::series_hash;
use horizon_shared::proto::{Label, MetricType};
use std::sync::Mutex;

use horizon_shared::raw::{
    LabelSets, LabelSlot, RawRow, RowSets, encode_flush, encode_flush_sets, lock_sets,
};

const NODES: usize = 100;
const SERIES: usize = 1000;
const LAPS: usize = 2;

struct Series {
    metric: String,
    labels: Vec<Label>,
    id: i64,
}

/// The load generator's series: four GPU metrics, `gpu` and `model` labels.
fn series() -> Vec<Series> {
    let metrics = [
        "gpu_utilization_percent",
        "gpu_memory_used_bytes",
        "gpu_temperature_celsius",
        "gpu_power_watts",
    ];
    (0..SERIES)
        .map(|s| {
            let metric = metrics[s % metrics.len()].to_owned();
            let labels = vec![
                Label {
                    key: "gpu".into(),
                    value: (s / metrics.len()).to_string(),
                },
                Label {
                    key: "model".into(),
                    value: "H100".into(),
                },
            ];
            let id = series_hash(&metric, &labels) as i64;
            Series { metric, labels, id }
        })
        .collect()
}

fn rows<'a>(nodes: &'a [String], series: &'a [Series]) -> Vec<RawRow<'a>> {
    let t0 = 1_800_000_000_000_000_000i64;
    let mut out = Vec::with_capacity(NODES * SERIES * LAPS);
    for lap in 0..LAPS {
        for node in nodes {
            for s in series {
                let time = t0 + lap as i64 * 1_000_000_000;
                out.push(RawRow {
                    node,
                    metric: &s.metric,
                    labels: &s.labels,
                    series_id: s.id,
                    time,
                    value: (out.len() % 100) as f64,
                    received_at: time + 2_000_000,
                    metric_type: MetricType::Gauge,
                });
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let nodes: Vec<String> = (0..NODES).map(|n| format!("gpu-node-{n:04}")).collect();
    let series = series();
    let rows = rows(&nodes, &series);
    let mut g = c.benchmark_group("raw");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("encode_flush_200k_rows", |b| {
        b.iter(|| encode_flush(rows.clone(), "relay-1", false, None).unwrap())
    });
    // As the relay encodes: the label sets coded in a series' slot (one
    // per node and series) by an earlier flush, so taken from the slots.
    let slots: Vec<LabelSlot> = (0..NODES * SERIES).map(|_| LabelSlot::default()).collect();
    let sets = Mutex::new(LabelSets::new());
    let row_sets = || {
        let mut s = lock_sets(&sets);
        let of_row = rows
            .iter()
            .enumerate()
            .map(|(i, r)| s.set_of(&slots[i % (NODES * SERIES)], r.labels))
            .collect();
        RowSets {
            sets: &sets,
            generation: s.generation(),
            of_row,
        }
    };
    row_sets();
    g.bench_function("encode_flush_sets_200k_rows", |b| {
        b.iter(|| {
            encode_flush_sets(rows.clone(), Some(row_sets()), "relay-1", false, None).unwrap()
        })
    });
    g.finish();
    let out = encode_flush(rows.clone(), "relay-1", false, None).unwrap();
    let bytes: usize = out.hours.iter().map(|o| o.2.len()).sum();
    println!(
        "{} rows in {} object(s), {bytes} bytes ({:.2} bytes/row)",
        rows.len(),
        out.hours.len(),
        bytes as f64 / rows.len() as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
