//! Raw objects for compactor tests, written with the relays' own encoder
//! (`horizon_shared::raw::encode_raw_objects`), and an independent model of
//! what the compacted dataset must hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use horizon_shared::layout::{Hour, late_object_key, raw_object_key};
use horizon_shared::model::series_hash;
use horizon_shared::proto::{Label, MetricType};
use horizon_shared::raw::{RawPoint, encode_flush, encode_raw_objects, metric_type_name};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// dcgm-exporter's labels of GPU `gpu` of the `node`th node (an H100).
pub fn gpu_labels(node: usize, gpu: usize) -> Vec<Label> {
    vec![
        Label {
            key: "UUID".into(),
            value: format!("GPU-{node:04}-{gpu:04}"),
        },
        Label {
            key: "gpu".into(),
            value: gpu.to_string(),
        },
        Label {
            key: "modelName".into(),
            value: "NVIDIA H100 80GB HBM3".into(),
        },
    ]
}

/// Points of `nodes` × `series` series, one every `step_secs` through `hour`,
/// received `recv_delay_ns` after their time, with values from `salt`. The
/// three metrics are a gauge, one of no stated type, and a counter.
pub fn points(
    hour: Hour,
    nodes: usize,
    series: usize,
    step_secs: i64,
    recv_delay_ns: i64,
    salt: f64,
) -> Vec<RawPoint> {
    let mut out = Vec::new();
    for n in 0..nodes {
        for s in 0..series {
            let metric = ["gpu_temp_celsius", "gpu_util_ratio", "nvlink bytes,total"][s % 3];
            let metric_type = [
                MetricType::Gauge,
                MetricType::Unspecified,
                MetricType::Counter,
            ][s % 3];
            let labels = vec![Label {
                key: "gpu".into(),
                value: format!("{}", s / 3),
            }];
            let mut t = hour.start_unix_secs;
            while t < hour.end_unix_secs() {
                let time = t * 1_000_000_000 + (n as i64) * 1_000;
                out.push(RawPoint {
                    node: format!("node-{n:03}"),
                    metric: metric.into(),
                    labels: labels.clone(),
                    time,
                    value: salt + (n * 1000 + s) as f64 + (t % 3600) as f64 / 10.0,
                    received_at: time + recv_delay_ns,
                    metric_type,
                });
                t += step_secs;
            }
        }
    }
    out
}

/// Writes `points` as `relay`'s raw objects (one per hour); returns the keys.
pub async fn put_raw(
    store: &Arc<dyn ObjectStore>,
    raw_prefix: &str,
    relay: &str,
    seq: u64,
    points: &[RawPoint],
) -> Vec<Path> {
    let mut keys = Vec::new();
    for (hour, _, bytes) in encode_raw_objects(points, relay).expect("relay encoder") {
        let key = Path::from(raw_object_key(
            raw_prefix,
            hour,
            relay,
            1_700_000_000_000,
            seq,
        ));
        store
            .put(&key, PutPayload::from(bytes))
            .await
            .expect("put raw object");
        keys.push(key);
    }
    keys
}

/// Writes `points` as one late object of `relay` (`<raw>/_late/`), as the
/// relay's flush does with points of past hours; returns its key.
pub async fn put_late(
    store: &Arc<dyn ObjectStore>,
    raw_prefix: &str,
    relay: &str,
    seq: u64,
    points: &[RawPoint],
) -> Path {
    let rows = points.iter().map(RawPoint::row).collect();
    // Every hour counts as late.
    let future = Hour::of_secs(i64::MAX / 2_000_000_000);
    let objects = encode_flush(rows, relay, false, Some(future)).expect("relay encoder");
    assert!(objects.hours.is_empty());
    let (_, bytes) = objects.late.expect("a late object");
    let key = Path::from(late_object_key(raw_prefix, relay, 1_700_000_000_000, seq));
    store
        .put(&key, PutPayload::from(bytes))
        .await
        .expect("put late object");
    key
}

/// (node, series_id, time)
pub type Key = (String, i64, i64);

/// One surviving row: (metric, value, received_at, relay, metric_type).
pub type Kept = (String, f64, i64, String, String);

/// The compacted dataset as the documented rule defines it, built without
/// the compactor's code: per (node, series, time), the copy with the
/// least (received_at, relay, value): the first received.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    /// Surviving rows by key.
    pub rows: BTreeMap<Key, Kept>,
}

impl Expected {
    /// Adds what `relay` wrote.
    pub fn add(&mut self, points: &[RawPoint], relay: &str) {
        for p in points {
            let key = (
                p.node.clone(),
                series_hash(&p.metric, &p.labels) as i64,
                p.time,
            );
            let cand = (
                p.metric.clone(),
                p.value,
                p.received_at,
                relay.to_owned(),
                metric_type_name(p.metric_type).to_owned(),
            );
            let better = match self.rows.get(&key) {
                None => true,
                Some(cur) => {
                    (cand.2, &cand.3, cand.1).partial_cmp(&(cur.2, &cur.3, cur.1))
                        == Some(std::cmp::Ordering::Less)
                }
            };
            if better {
                self.rows.insert(key, cand);
            }
        }
    }

    /// Rows of one hour.
    pub fn hour(&self, hour: Hour) -> usize {
        let (lo, hi) = (
            hour.start_unix_secs * 1_000_000_000,
            hour.end_unix_secs() * 1_000_000_000,
        );
        self.rows.keys().filter(|k| k.2 >= lo && k.2 < hi).count()
    }
}

/// Checks a compacted dataset read by pyarrow against the model: every key
/// once, each row's metric, value, receipt time, relay and metric type as
/// the rule says,
/// and every file snappy, sorted, in its hour's partition, with min/max
/// statistics for metric and node in every row group.
pub fn check_compacted(ds: &crate::ParquetDataset, want: &Expected) {
    assert!(
        !ds.files.is_empty() || want.rows.is_empty(),
        "no compacted files"
    );
    for f in &ds.files {
        let path = f["path"].as_str().unwrap_or_default();
        assert_eq!(
            f["codecs"],
            serde_json::json!(["SNAPPY"]),
            "{path} not snappy"
        );
        assert_eq!(
            f["sorted"], true,
            "{path} not sorted by metric, node, series, time"
        );
        assert_eq!(
            f["hours_ok"], true,
            "{path} holds rows outside its hour partition"
        );
        assert_eq!(
            f["stats_metric_node"], true,
            "{path} lacks min/max statistics"
        );
        assert_eq!(f["schema_version"], "2", "{path}");
        assert!(path.contains("/part-s"), "{path} is not a part file");
    }
    let mut got: BTreeMap<Key, Kept> = BTreeMap::new();
    for r in &ds.rows {
        let key = (
            r["node"].as_str().unwrap_or_default().to_owned(),
            r["series_id"].as_i64().unwrap_or_default(),
            r["time"].as_i64().unwrap_or_default(),
        );
        let kept = (
            r["metric"].as_str().unwrap_or_default().to_owned(),
            r["value"].as_f64().unwrap_or(f64::NAN),
            r["received_at"].as_i64().unwrap_or_default(),
            r["relay"].as_str().unwrap_or_default().to_owned(),
            r["metric_type"].as_str().unwrap_or_default().to_owned(),
        );
        assert!(
            got.insert(key.clone(), kept).is_none(),
            "{key:?} appears more than once"
        );
    }
    assert_eq!(got.len(), want.rows.len(), "row count");
    for (k, v) in &want.rows {
        assert_eq!(got.get(k), Some(v), "row {k:?}");
    }
}
