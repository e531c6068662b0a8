//! The rollup tables and their saved queries over a real compacted day: a
//! day of GPU utilisation and temperature, one sample a minute, from
//! dcgm-exporter on one node, the agent's NVML source on another and both on
//! a third, written as the relays write raw objects and compacted by the
//! real compactor until the day has closed and its 1-hour files exist.
//! `tests/py/check_lake.py` holds the Glue tables against docs/data.md and
//! the files, then runs the saved queries (and the DuckDB one-liners of
//! docs/athena.md and README.md) with `current_date` set to a chosen day:
//! 90 days after the test day, whose window holds it, then 91 days after,
//! whose does not. The answers expected are computed here from the values
//! generated.

use std::collections::BTreeMap;
use std::sync::Arc;

use horizon_compactor::{
    Compactor, DayOutcome, DayResult, RunOptions, Selection, Settings as CompactorSettings,
};
use horizon_e2e::rawdata::put_raw;
use horizon_shared::clock::unix_ms_now;
use horizon_shared::layout::Hour;
use horizon_shared::raw::RawPoint;
use horizon_shared::store::{S3Options, StoreLocation};
use serde_json::{Value, json};

use super::{check_lake, render, repo};

/// The day compacted (UTC).
const DAY: &str = "2026-11-20";
const GPUS: usize = 4;
const MINUTES: i64 = 24 * 60;

#[derive(Clone, Copy, PartialEq)]
enum Source {
    Dcgm,
    Nvml,
}

/// The nodes and the sources each runs.
const NODES: [(&str, &[Source]); 3] = [
    ("gpu-node-a", &[Source::Dcgm]),
    ("gpu-node-b", &[Source::Nvml]),
    ("gpu-node-c", &[Source::Dcgm, Source::Nvml]),
];

/// GPU 2 of node b idles all day, under 5% at every sample.
const IDLE: (usize, usize) = (1, 2);
/// GPU 1 of node a idles but for one busy minute: its mean is under 5%, its
/// peak is not.
const ALMOST_IDLE: (usize, usize, i64) = (0, 1, 700);
/// GPU 3 of node a reaches the day's peak temperature at one minute.
const HOT: (usize, usize, i64, f64) = (0, 3, 1000, 97.25);

fn utilization(node: usize, gpu: usize, minute: i64, source: Source) -> f64 {
    let v = if (node, gpu) == IDLE {
        (minute % 5) as f64 * 0.9
    } else if (node, gpu) == (ALMOST_IDLE.0, ALMOST_IDLE.1) {
        if minute == ALMOST_IDLE.2 { 60.0 } else { 1.0 }
    } else {
        ((node as i64 * 31 + gpu as i64 * 17 + minute * 7) % 101) as f64
    };
    // Where both sources report a GPU, they differ a little.
    if source == Source::Nvml && NODES[node].1.len() > 1 {
        v + 0.5
    } else {
        v
    }
}

fn temperature(node: usize, gpu: usize, minute: i64, source: Source) -> f64 {
    if (node, gpu, minute) == (HOT.0, HOT.1, HOT.2) {
        return HOT.3;
    }
    let v = 35.0 + 3.0 * gpu as f64 + node as f64 + (minute % 11) as f64 * 0.5;
    if source == Source::Nvml { v - 0.25 } else { v }
}

fn metrics(source: Source) -> (&'static str, &'static str) {
    match source {
        Source::Dcgm => ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP"),
        Source::Nvml => ("gpu_utilization_percent", "gpu_temperature_celsius"),
    }
}

/// The day's points: utilisation and temperature of every GPU of every
/// source each minute, and node a's power (which no query may count).
fn day_points(day: Hour) -> Vec<RawPoint> {
    let mut out = Vec::new();
    for (n, (node, sources)) in NODES.iter().enumerate() {
        for gpu in 0..GPUS {
            let labels = horizon_e2e::rawdata::gpu_labels(n, gpu);
            for minute in 0..MINUTES {
                let time = (day.start_unix_secs + minute * 60) * 1_000_000_000;
                let mut point = |metric: &str, value: f64| {
                    out.push(RawPoint {
                        node: (*node).into(),
                        metric: metric.into(),
                        labels: labels.clone(),
                        time,
                        value,
                        received_at: time + 1_000_000,
                        metric_type: horizon_shared::proto::MetricType::Gauge,
                    });
                };
                for &source in *sources {
                    let (util, temp) = metrics(source);
                    point(util, utilization(n, gpu, minute, source));
                    point(temp, temperature(n, gpu, minute, source));
                }
                if n == 0 {
                    point("DCGM_FI_DEV_POWER_USAGE", 350.0 + gpu as f64);
                }
            }
        }
    }
    out
}

/// What the queries must answer, from the generated values.
struct Expected {
    /// node -> GPU-hours busy: per GPU and hour, the mean of the preferred
    /// source's samples (dcgm-exporter's where both report), over 100.
    busy: BTreeMap<&'static str, f64>,
    /// (node, gpu) -> greatest temperature of any source.
    peak: BTreeMap<(&'static str, String), f64>,
    /// (node, gpu) -> (peak, mean) utilisation of GPUs under 5% at every
    /// sample of every source.
    idle: BTreeMap<(&'static str, String), (f64, f64)>,
    /// node -> (mean, peak) utilisation over every sample of every source.
    per_node: BTreeMap<&'static str, (f64, f64)>,
}

fn expected() -> Expected {
    let mut e = Expected {
        busy: BTreeMap::new(),
        peak: BTreeMap::new(),
        idle: BTreeMap::new(),
        per_node: BTreeMap::new(),
    };
    for (n, (node, sources)) in NODES.iter().enumerate() {
        let mut node_all = Vec::new();
        let mut busy = 0.0;
        for gpu in 0..GPUS {
            let preferred = if sources.contains(&Source::Dcgm) {
                Source::Dcgm
            } else {
                Source::Nvml
            };
            for hour in 0..24 {
                let sum: f64 = (hour * 60..hour * 60 + 60)
                    .map(|m| utilization(n, gpu, m, preferred))
                    .sum();
                busy += sum / 60.0 / 100.0;
            }
            let mut all = Vec::new();
            let mut peak = f64::MIN;
            for &source in *sources {
                for m in 0..MINUTES {
                    all.push(utilization(n, gpu, m, source));
                    peak = peak.max(temperature(n, gpu, m, source));
                }
            }
            e.peak.insert((node, gpu.to_string()), peak);
            let max = all.iter().copied().fold(f64::MIN, f64::max);
            let mean = all.iter().sum::<f64>() / all.len() as f64;
            if max < 5.0 {
                e.idle.insert((node, gpu.to_string()), (max, mean));
            }
            node_all.extend(all);
        }
        e.busy.insert(node, busy);
        let max = node_all.iter().copied().fold(f64::MIN, f64::max);
        let mean = node_all.iter().sum::<f64>() / node_all.len() as f64;
        e.per_node.insert(node, (mean, max));
    }
    e
}

fn close(a: &Value, b: f64, what: &str) {
    let a = a
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {a} is not a number"));
    assert!(
        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        "{what}: {a}, expected {b}"
    );
}

/// `days` after `day` (YYYY-MM-DD), as YYYY-MM-DD.
fn plus_days(day: Hour, days: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(day.start_unix_secs + days * 86_400).unwrap();
    t.date().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saved_rollup_queries_answer_over_a_compacted_day() {
    let rendered = render(false);
    let store_dir = tempfile::tempdir().unwrap();
    let url = store_dir.path().display().to_string();
    let store = StoreLocation::parse(&url, &S3Options::default())
        .unwrap()
        .build()
        .unwrap();
    let day = Hour::parse(&format!("{DAY}T00")).unwrap();
    put_raw(&store, "raw", "relay-a", 1, &day_points(day)).await;
    let compactor = Compactor::with_store(
        CompactorSettings::from_args(["--store-url", url.as_str()]).unwrap(),
        Arc::clone(&store),
    );
    let report = compactor
        .run(
            &Selection::Closed {
                now_ms: unix_ms_now(),
            },
            &RunOptions::default(),
            &(),
        )
        .await
        .unwrap();
    assert_eq!(report.failures(), 0, "{report:#?}");
    assert_eq!(report.units.len(), 24, "{report:#?}");
    assert!(
        report
            .days
            .iter()
            .any(|d| matches!(d, DayResult::Ok(DayOutcome::Built { .. }))),
        "the day closed and its 1-hour files were built: {report:#?}"
    );

    let want = expected();
    assert_eq!(
        want.idle.keys().collect::<Vec<_>>(),
        [&(NODES[IDLE.0].0, IDLE.1.to_string())],
        "the data has one idle GPU"
    );
    assert_eq!(
        want.peak[&(NODES[HOT.0].0, HOT.1.to_string())],
        HOT.3,
        "the injected peak is the hottest"
    );
    let docs = [
        repo().join("docs/athena.md").display().to_string(),
        repo().join("README.md").display().to_string(),
    ];
    let run = |today: String| {
        let mut extra = vec!["--today".to_owned(), today, "--docs".to_owned()];
        extra.extend(docs.iter().cloned());
        check_lake(
            rendered.path(),
            store_dir.path(),
            "rollups_1m,rollups_1h",
            &extra,
        )
    };

    // current_date 90 days after the day: the window's first day.
    let r = run(plus_days(day, 90));
    let q = &r["queries"];
    let names: Vec<&String> = q.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        [
            "gpu_hours_busy_per_node_per_day",
            "idle_gpus",
            "peak_gpu_temperature_per_gpu_per_day"
        ],
        "the queries over the rollup tables, and only those"
    );

    let busy = q["gpu_hours_busy_per_node_per_day"].as_array().unwrap();
    assert_eq!(busy.len(), NODES.len(), "{busy:?}");
    for (row, (node, hours)) in busy.iter().zip(&want.busy) {
        assert_eq!(row[0], *node);
        assert_eq!(row[1], DAY);
        assert_eq!(row[2], json!(GPUS), "GPUs of {node}");
        assert_eq!(row[3], json!(GPUS * 24), "GPU-hours of {node}, each once");
        close(&row[4], *hours, &format!("GPU-hours busy of {node}"));
    }

    let peak = q["peak_gpu_temperature_per_gpu_per_day"]
        .as_array()
        .unwrap();
    assert_eq!(peak.len(), want.peak.len(), "{peak:?}");
    for (row, ((node, gpu), celsius)) in peak.iter().zip(&want.peak) {
        assert_eq!(
            (&row[0], &row[1], &row[2]),
            (&json!(node), &json!(gpu), &json!(DAY))
        );
        close(&row[3], *celsius, &format!("peak of {node} GPU {gpu}"));
    }

    let idle = q["idle_gpus"].as_array().unwrap();
    assert_eq!(idle.len(), want.idle.len(), "only the idle GPU: {idle:?}");
    for (row, ((node, gpu), (max, mean))) in idle.iter().zip(&want.idle) {
        assert_eq!(
            (&row[0], &row[1], &row[2]),
            (&json!(node), &json!(gpu), &json!(DAY))
        );
        assert_eq!(row[3], 24, "hours reported");
        close(&row[4], *max, "idle peak");
        close(&row[5], *mean, "idle mean");
    }

    // The documented one-liners ran and gave the saved queries' rows
    // (check_lake compares them); README's question, from the minute level.
    let lines = &r["one_liners"];
    for name in names {
        assert!(
            lines.get(name).is_some(),
            "no one-liner for {name}: {lines}"
        );
    }
    let per_node = lines["gpu_utilization_per_node_per_day"]
        .as_array()
        .unwrap_or_else(|| panic!("README's one-liner did not run: {lines}"));
    assert_eq!(per_node.len(), NODES.len(), "{per_node:?}");
    for (row, (node, (mean, max))) in per_node.iter().zip(&want.per_node) {
        assert_eq!((&row[0], &row[1]), (&json!(node), &json!(DAY)));
        close(&row[2], *mean, &format!("mean of {node}"));
        close(&row[3], *max, &format!("peak of {node}"));
    }

    // 91 days after: the day is out of every window.
    let r = run(plus_days(day, 91));
    for (name, rows) in r["queries"].as_object().unwrap() {
        assert_eq!(rows, &json!([]), "{name} outside its 90 days");
    }
    for (name, rows) in r["one_liners"].as_object().unwrap() {
        assert_eq!(rows, &json!([]), "{name} outside its 90 days");
    }
}
