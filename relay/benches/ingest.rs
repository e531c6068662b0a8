//! Batch validation and budget admission throughput, in points per second.
//!
//! `cargo bench -p horizon-relay --bench ingest`

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use horizon_relay::budget::Budgets;
use horizon_relay::config::BudgetSettings;
use horizon_relay::ingest::{IngestLimits, StreamDictionary, process_batch};
use horizon_shared::model::{SeriesLimits, TimeWindow};
use horizon_shared::proto::{Label, MetricBatch, SeriesDef};

const NOW: i64 = 1_800_000_000_000_000_000;

fn budgets(per_node: usize) -> Budgets {
    Budgets::new(BudgetSettings {
        max_series_per_node: per_node,
        max_series_per_metric: None,
        max_series_total: 10_000_000,
        series_ttl: Duration::from_secs(600),
        metrics_top_nodes: 20,
        overrides: BTreeMap::new(),
    })
}

fn limits() -> IngestLimits {
    IngestLimits {
        max_batch_size: 1000,
        series: SeriesLimits::default(),
        time_window: TimeWindow {
            max_age_ns: 3600 * 1_000_000_000,
            max_future_ns: 600 * 1_000_000_000,
        },
    }
}

fn defs(n: u32) -> Vec<SeriesDef> {
    (0..n)
        .map(|i| SeriesDef {
            id: i,
            metric: "gpu_utilization_percent".into(),
            labels: vec![
                Label {
                    key: "gpu".into(),
                    value: (i % 8).to_string(),
                },
                Label {
                    key: "slot".into(),
                    value: i.to_string(),
                },
            ],
            metric_type: 0,
        })
        .collect()
}

fn points(n: usize, series: u32) -> MetricBatch {
    MetricBatch {
        sequence: 1,
        series_defs: vec![],
        series_ids: (0..n).map(|i| i as u32 % series).collect(),
        base_time_unix_nano: NOW,
        time_deltas: vec![0; n],
        values: (0..n).map(|i| i as f64).collect(),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(1000));

    // Steady state: every series already defined on the stream and live.
    let b = budgets(10_000);
    let node = b.node("gpu-node-1");
    let mut dict = StreamDictionary::new(65_536);
    let mut warm = points(1000, 1000);
    warm.series_defs = defs(1000);
    process_batch(warm, &mut dict, &b, &node, &limits(), NOW, 0);
    g.bench_function("validate_1000_points_steady", |bench| {
        bench.iter_batched(
            || points(1000, 1000),
            |mb| process_batch(mb, &mut dict, &b, &node, &limits(), NOW, 1),
            BatchSize::SmallInput,
        )
    });

    // A spraying node at its budget: every point is a refused new series.
    let b2 = budgets(10);
    let node2 = b2.node("sprayer");
    let mut dict2 = StreamDictionary::new(65_536);
    let mut warm = points(1000, 1000);
    warm.series_defs = defs(1000);
    process_batch(warm, &mut dict2, &b2, &node2, &limits(), NOW, 0);
    g.bench_function("validate_1000_points_over_budget", |bench| {
        bench.iter_batched(
            || points(1000, 1000),
            |mb| process_batch(mb, &mut dict2, &b2, &node2, &limits(), NOW, 0),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // The admission check alone, per point, on a node holding 10,000 series.
    let mut g = c.benchmark_group("budget");
    g.throughput(Throughput::Elements(10_000));
    let b3 = budgets(10_000);
    let node3 = b3.node("n");
    {
        let mut guard = b3.lock(&node3);
        for s in 0..10_000u64 {
            guard.admit(s.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1, 0);
        }
    }
    g.bench_function("admit_existing_10k_series", |bench| {
        bench.iter(|| {
            let mut guard = b3.lock(&node3);
            for s in 0..10_000u64 {
                std::hint::black_box(guard.admit(s.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1, 1));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
