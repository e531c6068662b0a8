//! The relay's sinks against real servers: Parquet objects on a local
//! directory and on an S3 API (moto), read back by pyarrow; InfluxDB 1.x
//! (influxd) and the v2 write API (VictoriaMetrics), read back by their own
//! query APIs. Outages and drain. One module per topic in one test binary.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use horizon_e2e::servers::{Gate, Influx1, Moto, Victoria};
use horizon_e2e::{Metrics, TestPki, TestRelay, queue_values, read_parquet, send_values};
use horizon_shared::client::{Batch, Client, Point, SeriesId};
use horizon_shared::clock::unix_nanos_now;
use horizon_shared::proto::{Durability, MetricType, RejectReason};

mod batchers;
mod drain;
mod influx;
mod outages;
mod parquet;

/// A point as it should come back: node, metric, labels, time (ns), value.
type Expected = (String, String, BTreeMap<String, String>, i64, f64);

const ODD_METRIC: &str = r#"gpu util, "quoted"=x\y"#;
const ODD_KEY: &str = "a b,c=d";
const ODD_VALUE: &str = r#"e "f",=g\h"#;

/// Sends `per_series` points for a plain series (a gauge, by its
/// definition's type) and an oddly named one, half of them an hour back (so
/// two hour partitions), in batches of 10. Returns what should be stored.
async fn send_points(client: &Client, node: &str, per_series: usize) -> Vec<Expected> {
    let plain = client
        .typed_series(
            "gpu_temperature_celsius",
            &[("gpu", "3"), ("model", "H100")],
            MetricType::Gauge,
        )
        .unwrap();
    let odd = client
        .series(ODD_METRIC, &[(ODD_KEY, ODD_VALUE), ("gpu", "0")])
        .unwrap();
    let now = unix_nanos_now();
    let mut expected = Vec::new();
    let mut points = Vec::new();
    for i in 0..per_series {
        let t = if i % 2 == 0 {
            now - 3_600_000_000_000
        } else {
            now
        } + i as i64 * 1_000_000;
        let (v1, v2) = (40.0 + i as f64 * 0.25, -1.5e-3 * i as f64);
        points.push(Point::new(plain, t, v1));
        points.push(Point::new(odd, t, v2));
        expected.push((
            node.into(),
            "gpu_temperature_celsius".into(),
            labels(&[("gpu", "3"), ("model", "H100")]),
            t,
            v1,
        ));
        expected.push((
            node.into(),
            ODD_METRIC.into(),
            labels(&[(ODD_KEY, ODD_VALUE), ("gpu", "0")]),
            t,
            v2,
        ));
    }
    // Sixteen more series, so that series ids of both signs (the hash is
    // stored as i64) are in every object and the sort order is checked.
    for g in 0..16 {
        let gpu = g.to_string();
        let id = client.series("gpu_sm_clock_mhz", &[("gpu", &gpu)]).unwrap();
        points.push(Point::new(id, now, 1410.0));
        expected.push((
            node.into(),
            "gpu_sm_clock_mhz".into(),
            labels(&[("gpu", &gpu)]),
            now,
            1410.0,
        ));
        points.push(Point::new(id, now - 3_600_000_000_000, 1395.0));
        expected.push((
            node.into(),
            "gpu_sm_clock_mhz".into(),
            labels(&[("gpu", &gpu)]),
            now - 3_600_000_000_000,
            1395.0,
        ));
    }
    let mut pending = Vec::new();
    for chunk in points.chunks(10) {
        pending.push(
            client
                .send(Batch {
                    points: chunk.to_vec(),
                })
                .await
                .unwrap(),
        );
    }
    for p in pending {
        let a = p.await.unwrap().ack;
        assert_eq!(a.rejected, 0, "{:?}", a.rejections);
        assert_eq!(a.durability, Durability::Durable as i32);
    }
    expected
}

fn labels(l: &[(&str, &str)]) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn from_parquet(rows: &[serde_json::Value]) -> Vec<Expected> {
    let mut out: Vec<Expected> = rows
        .iter()
        .map(|r| {
            let labels = r["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (
                r["node"].as_str().unwrap().to_owned(),
                r["metric"].as_str().unwrap().to_owned(),
                labels,
                r["time"].as_i64().unwrap(),
                r["value"].as_f64().unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

/// Compares two point lists, reporting only the first difference.
fn assert_same(got: &[Expected], want: &[Expected], close: bool) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let value_ok = if close {
            (g.4 - w.4).abs() <= 1e-9 * w.4.abs().max(1.0)
        } else {
            g.4.to_bits() == w.4.to_bits()
        };
        assert!(
            g.0 == w.0 && g.1 == w.1 && g.2 == w.2 && g.3 == w.3 && value_ok,
            "row {i}: got {g:?}, want {w:?}"
        );
    }
    assert_eq!(got.len(), want.len(), "row count");
}

fn sorted(mut v: Vec<Expected>) -> Vec<Expected> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

async fn eventually<T, F, Fut>(mut f: F, ok: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut last = f().await;
    for _ in 0..100 {
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = f().await;
    }
    last
}

/// The relay's metrics once its InfluxDB sink has written points and holds
/// none buffered (or after 10 s of waiting for that).
async fn influx_drained(relay: &TestRelay) -> Metrics {
    eventually(
        || relay.scrape(),
        |m| {
            m.get("horizon_relay_influxdb_buffered_points") == 0.0
                && m.get("horizon_relay_influxdb_written_points_total") > 0.0
        },
    )
    .await
}

fn s3_yaml(endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        "object_store:\n  url: s3://{bucket}/fleet-a\n  endpoint: {endpoint}\n  region: us-east-1\n  path_style: true\n  allow_http: true\n  access_key_id: test\n  secret_access_key: test\n{extra}"
    )
}
