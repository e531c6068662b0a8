//! The relay's sinks against real servers: Parquet objects on a local
//! directory and on an S3 API (moto), read back by pyarrow; InfluxDB 1.x
//! (influxd) and the v2 write API (VictoriaMetrics), read back by their own
//! query APIs. Outages and drain.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use horizon_e2e::servers::{Gate, Influx1, Moto, Victoria};
use horizon_e2e::{TestPki, TestRelay, queue_values, read_parquet, send_values};
use horizon_shared::client::{Batch, Client, Point, SeriesId, unix_nanos_now};
use horizon_shared::proto::{Durability, RejectReason};

/// A point as it should come back: node, metric, labels, time (ns), value.
type Expected = (String, String, BTreeMap<String, String>, i64, f64);

const ODD_METRIC: &str = r#"gpu util, "quoted"=x\y"#;
const ODD_KEY: &str = "a b,c=d";
const ODD_VALUE: &str = r#"e "f",=g\h"#;

/// Sends `per_series` points for a plain series and an oddly named one, half
/// of them an hour back (so two hour partitions), in batches of 10. Returns
/// what should be stored.
async fn send_points(client: &Client, node: &str, per_series: usize) -> Vec<Expected> {
    let plain = client
        .series(
            "gpu_temperature_celsius",
            &[("gpu", "3"), ("model", "H100")],
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

fn check_files(files: &[serde_json::Value], codec: &str) {
    assert!(!files.is_empty());
    let mut partitions = BTreeSet::new();
    for f in files {
        let path = f["path"].as_str().unwrap();
        assert!(path.contains("raw/dt="), "{path}");
        assert_eq!(f["codecs"], serde_json::json!([codec]), "{path}");
        assert_eq!(
            f["sorted"], true,
            "{path} rows sorted by metric, node, series, time"
        );
        assert_eq!(f["hours_ok"], true, "{path} rows in the partition's hour");
        assert_eq!(f["schema_version"], "1");
        partitions.insert(path.rsplit_once('/').unwrap().0.to_owned());
    }
    assert!(
        partitions.len() >= 2,
        "points of two hours land in two partitions: {partitions:?}"
    );
}

#[tokio::test]
async fn parquet_on_a_local_directory_holds_exactly_the_acked_points() {
    let relay = TestRelay::start("").await;
    let client = relay.client("gpu-node-7").await;
    let expected = send_points(&client, "gpu-node-7", 50).await;
    let data = read_parquet(&["local", relay.objects.to_str().unwrap()]);
    check_files(&data.files, "SNAPPY");
    assert_same(&from_parquet(&data.rows), &sorted(expected), false);
    let m = relay.scrape().await;
    assert_eq!(m.get("horizon_relay_points_written_total"), 132.0);
    assert!(m.get("horizon_relay_s3_objects_written_total") >= 2.0);
    client.close().await;
    relay.stop().await;
}

fn s3_yaml(endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        "object_store:\n  url: s3://{bucket}/fleet-a\n  endpoint: {endpoint}\n  region: us-east-1\n  path_style: true\n  allow_http: true\n  access_key_id: test\n  secret_access_key: test\n{extra}"
    )
}

#[tokio::test]
async fn parquet_on_s3_is_read_back_by_pyarrow() {
    let moto = Moto::start("telemetry").await;
    let relay = TestRelay::start(
        &(s3_yaml(&moto.url(), "telemetry", "") + "parquet:\n  compression: zstd\n"),
    )
    .await;
    let client = relay.client("gpu-node-9").await;
    let expected = send_points(&client, "gpu-node-9", 40).await;
    let data = read_parquet(&["s3", &moto.addr.to_string(), "telemetry", "fleet-a"]);
    check_files(&data.files, "ZSTD");
    assert_same(&from_parquet(&data.rows), &sorted(expected), false);
    client.close().await;
    relay.stop().await;
}

fn influx_rows(v: &serde_json::Value) -> Vec<Expected> {
    let mut out = Vec::new();
    for series in v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = series["name"].as_str().unwrap().to_owned();
        let cols: Vec<String> = series["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        for row in series["values"].as_array().unwrap() {
            let mut tags = BTreeMap::new();
            let (mut t, mut val, mut node) = (0, 0.0, String::new());
            for (c, x) in cols.iter().zip(row.as_array().unwrap()) {
                match c.as_str() {
                    "time" => t = x.as_i64().unwrap(),
                    "value" => val = x.as_f64().unwrap(),
                    "node" => node = x.as_str().unwrap().to_owned(),
                    k => {
                        if let Some(s) = x.as_str() {
                            tags.insert(k.to_owned(), s.to_owned());
                        }
                    }
                }
            }
            out.push((node, name.clone(), tags, t, val));
        }
    }
    sorted(out)
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

#[tokio::test]
async fn influxdb_1x_gets_every_point_with_exact_names() {
    let influx = Influx1::start("telemetry").await;
    let yaml = format!(
        "influxdb:\n  url: http://{}\n  api: v1\n  database: telemetry\n  flush_interval_ms: 100\n",
        influx.addr
    );
    let relay = TestRelay::start(&yaml).await;
    let client = relay.client("gpu node,7=x").await;
    let expected = sorted(send_points(&client, "gpu node,7=x", 30).await);
    let got = eventually(
        || async { influx_rows(&influx.query("telemetry", "SELECT * FROM /.*/").await) },
        |r: &Vec<Expected>| r.len() >= expected.len(),
    )
    .await;
    assert_same(&got, &expected, false);
    let m = relay.scrape().await;
    assert_eq!(m.get("horizon_relay_influxdb_written_points_total"), 92.0);
    assert_eq!(m.get("horizon_relay_influxdb_dropped_points_total"), 0.0);
    client.close().await;
    relay.stop().await;
}

fn victoria_rows(
    samples: &[(serde_json::Map<String, serde_json::Value>, f64, i64)],
) -> Vec<Expected> {
    sorted(
        samples
            .iter()
            .map(|(l, v, t)| {
                let mut tags: BTreeMap<String, String> = l
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                let name = tags.remove("__name__").unwrap();
                let node = tags.remove("node").unwrap_or_default();
                // VictoriaMetrics names an InfluxDB field `<measurement>_<field>`.
                let metric = name.strip_suffix("_value").unwrap_or(&name).to_owned();
                (node, metric, tags, *t, *v)
            })
            .collect(),
    )
}

#[tokio::test]
async fn influxdb_v2_write_api_gets_every_point() {
    let vm = Victoria::start().await;
    let yaml = format!(
        "influxdb:\n  url: http://{}\n  api: v2\n  org: horizon\n  bucket: telemetry\n  token: s3cr3t\n  flush_interval_ms: 100\n",
        vm.addr
    );
    let relay = TestRelay::start(&yaml).await;
    let client = relay.client("gpu-node-2").await;
    // VictoriaMetrics keeps milliseconds.
    let expected: Vec<Expected> = sorted(
        send_points(&client, "gpu-node-2", 30)
            .await
            .into_iter()
            .map(|(n, m, l, t, v)| (n, m, l, t / 1_000_000, v))
            .collect(),
    );
    let got = eventually(
        || async { victoria_rows(&vm.export().await) },
        |r: &Vec<Expected>| r.len() >= expected.len(),
    )
    .await;
    // VictoriaMetrics stores about 12 significant digits.
    assert_same(&got, &expected, true);
    client.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn s3_outage_holds_acks_pushes_back_and_loses_nothing() {
    let moto = Moto::start("telemetry").await;
    let gate = Gate::start(moto.addr).await;
    let relay = TestRelay::start(&s3_yaml(
        &gate.url(),
        "telemetry",
        "limits:\n  backpressure_threshold: 4\n",
    ))
    .await;
    let client = relay.client("gpu-node-5").await;
    let s = client.series("gpu_power_watts", &[("gpu", "1")]).unwrap();

    let before = send_values(&client, s, 0..5).await;
    assert!(
        before
            .iter()
            .all(|a| a.ack.durability == Durability::Durable as i32)
    );

    gate.close();
    let sender = tokio::spawn(async move {
        // The first 20 fill a micro-batch whose write then hangs; the next 20
        // find the batcher stuck: 4 fill the queue, the next waits for room
        // and the stream stops being read.
        let mut pending = queue_values(&client, s, 5..25).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        pending.extend(queue_values(&client, s, 25..45).await);
        let mut acks = Vec::new();
        for p in pending {
            acks.push(p.await.unwrap());
        }
        (client, acks)
    });
    // While the store is down nothing is acked, the queue stays at its bound.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = relay.scrape().await;
    assert!(
        m.get("horizon_relay_s3_put_errors_total") >= 1.0,
        "writes failed while down"
    );
    assert_eq!(
        m.get("horizon_relay_sink_queue_batches"),
        4.0,
        "queue full, at limits.backpressure_threshold"
    );
    assert_eq!(
        m.get("horizon_relay_points_written_total"),
        5.0,
        "nothing more stored while down"
    );
    assert!(
        !sender.is_finished(),
        "no durable ack while the store is down"
    );

    gate.open();
    let (client, acks) = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("acks resume")
        .unwrap();
    assert!(
        acks.iter()
            .all(|a| a.ack.accepted == 1 && a.ack.durability == Durability::Durable as i32)
    );
    // The batches that found the queue full say so in their acks, and the
    // metrics count exactly those.
    let queued = (before.iter().chain(&acks))
        .filter(|a| a.ack.queue_wait_ms > 0)
        .count();
    assert!(queued >= 1, "batches waited for the full queue");
    let m = relay.scrape().await;
    assert_eq!(
        m.get(r#"horizon_relay_throttled_batches_total{limit="sink_queue"}"#),
        queued as f64
    );
    assert!(
        acks.iter().map(|a| a.ack.queue_wait_ms).max() >= Some(1000),
        "the batch waiting through the outage reports that wait: {:?}",
        acks.iter().map(|a| a.ack.queue_wait_ms).collect::<Vec<_>>()
    );
    let data = read_parquet(&["s3", &moto.addr.to_string(), "telemetry", "fleet-a"]);
    let values: BTreeSet<i64> = data
        .rows
        .iter()
        .map(|r| r["value"].as_f64().unwrap() as i64)
        .collect();
    assert_eq!(values, (0..45).collect(), "every acked point is stored");
    assert_eq!(data.rows.len(), 45, "and stored once");
    client.close().await;
    relay.stop().await;
}

async fn send_and_wait(client: &Client, s: SeriesId, values: std::ops::Range<i32>) -> Vec<i32> {
    send_values(client, s, values)
        .await
        .into_iter()
        .map(|a| a.ack.durability)
        .collect()
}

#[tokio::test]
async fn influxdb_outage_does_not_slow_parquet_and_drops_are_counted() {
    let vm = Victoria::start().await;
    let gate = Gate::start(vm.addr).await;
    let yaml = format!(
        "influxdb:\n  url: {}\n  api: v2\n  org: o\n  bucket: b\n  batch_points: 10\n  max_buffered_points: 20\n  flush_interval_ms: 50\n  timeout_secs: 1\n",
        gate.url()
    );
    let relay = TestRelay::start(&yaml).await;
    let client = relay.client("gpu-node-6").await;
    let s = client.series("gpu_clock_mhz", &[]).unwrap();
    gate.close();
    // The Parquet path keeps acking durably while InfluxDB is unreachable.
    let durability = send_and_wait(&client, s, 0..100).await;
    assert!(durability.iter().all(|d| *d == Durability::Durable as i32));
    gate.open();
    let m = eventually(
        || relay.scrape(),
        |m| {
            m.get("horizon_relay_influxdb_buffered_points") == 0.0
                && m.get("horizon_relay_influxdb_written_points_total") > 0.0
        },
    )
    .await;
    let dropped = m.get("horizon_relay_influxdb_dropped_points_total");
    let written = m.get("horizon_relay_influxdb_written_points_total");
    assert!(dropped > 0.0, "the bounded buffer overflowed");
    assert_eq!(
        written + dropped,
        100.0,
        "every point is written or counted as dropped"
    );
    let stored = eventually(|| vm.export(), |r| r.len() as f64 >= written).await;
    assert_eq!(
        stored.len() as f64,
        written,
        "InfluxDB holds exactly what was not dropped"
    );
    assert_eq!(
        m.get("horizon_relay_points_written_total"),
        100.0,
        "Parquet got everything"
    );
    client.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn sigterm_drain_stores_everything_it_acked() {
    let pki = TestPki::new();
    let relay = TestRelay::start_at(
        pki.clone(),
        "parquet:\n  rotation_interval_secs: 60\n",
        None,
    )
    .await;
    let objects = relay.objects.clone();
    let client = relay.client("gpu-node-8").await;
    let s = client.series("gpu_util", &[]).unwrap();
    let pending = queue_values(&client, s, 0..200).await;
    // Stop while acks wait for a flush that is a minute away: the drain
    // flushes at once and acks what it stored.
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Batches the relay never acked stay with the client for resending;
    // count only the acks that arrived.
    let mut durable = BTreeSet::new();
    for (i, p) in pending.into_iter().enumerate() {
        if let Ok(Ok(a)) = tokio::time::timeout(Duration::from_millis(50), p).await {
            if a.ack.durability == Durability::Durable as i32 && a.ack.accepted == 1 {
                durable.insert(i as i64);
            } else {
                assert!(
                    a.ack
                        .rejections
                        .iter()
                        .all(|r| r.reason == RejectReason::Overloaded as i32),
                    "{:?}",
                    a.ack
                );
            }
        }
    }
    assert!(!durable.is_empty(), "the drain acked the batches it had");
    let data = read_parquet(&["local", objects.to_str().unwrap()]);
    let stored: BTreeSet<i64> = data
        .rows
        .iter()
        .map(|r| r["value"].as_f64().unwrap() as i64)
        .collect();
    assert!(
        durable.is_subset(&stored),
        "acked durably but missing: {:?}",
        durable.difference(&stored).collect::<Vec<_>>()
    );
    drop(client);
}

#[tokio::test]
async fn micro_batches_flush_on_rows_and_on_bytes_before_their_age() {
    for (what, yaml) in [
        (
            "rows",
            "parquet:\n  rotation_interval_secs: 600\n  flush_rows: 100\n",
        ),
        (
            "bytes",
            "parquet:\n  rotation_interval_secs: 600\n  flush_bytes: 10000\n",
        ),
    ] {
        let relay = TestRelay::start(yaml).await;
        let client = relay.client("gpu-node-4").await;
        let s = client
            .series(
                "gpu_memory_used_bytes",
                &[("gpu", "0"), ("uuid", "GPU-0b3f")],
            )
            .unwrap();
        // 150 points: over 100 rows, and over 10,000 estimated bytes (about 100 bytes a row).
        let ack = tokio::time::timeout(
            Duration::from_secs(30),
            client
                .send(Batch {
                    points: (0..150).map(|i| Point::now(s, f64::from(i))).collect(),
                })
                .await
                .unwrap(),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: no flush before the 600 s age"))
        .unwrap();
        assert_eq!(ack.ack.durability, Durability::Durable as i32, "{what}");
        assert_eq!(
            read_parquet(&["local", relay.objects.to_str().unwrap()])
                .rows
                .len(),
            150,
            "{what}"
        );
        client.close().await;
        relay.stop().await;
    }
}

#[tokio::test]
async fn readiness_fails_while_the_object_store_keeps_failing() {
    let moto = Moto::start("telemetry").await;
    let gate = Gate::start(moto.addr).await;
    let yaml = s3_yaml(
        &gate.url(),
        "telemetry",
        "observability:\n  unready_after_store_failure_secs: 1\n",
    );
    let relay = TestRelay::start(&yaml).await;
    assert_eq!(relay.http_get("/readyz").await.0, 200);
    let client = relay.client("gpu-node-3").await;
    let s = client.series("gpu_util", &[]).unwrap();

    gate.close();
    let pending = client
        .send(Batch {
            points: vec![Point::now(s, 1.0)],
        })
        .await
        .unwrap();
    let (code, body) = eventually(|| relay.http_get("/readyz"), |(c, _)| *c == 503).await;
    assert_eq!(code, 503, "unready while the store fails");
    assert!(body.contains("object store"), "{body}");

    gate.open();
    let ack = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .expect("acked once the store is back")
        .unwrap();
    assert_eq!(ack.ack.durability, Durability::Durable as i32);
    assert_eq!(
        eventually(|| relay.http_get("/readyz"), |(c, _)| *c == 200)
            .await
            .0,
        200,
        "ready again"
    );
    client.close().await;
    relay.stop().await;
}
