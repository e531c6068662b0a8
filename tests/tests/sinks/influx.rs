//! InfluxDB 1.x (influxd) and the v2 write API (VictoriaMetrics), read back by their query APIs.

use super::*;

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

#[tokio::test]
async fn influxdb_1x_gets_every_point_with_exact_names() {
    let influx = Influx1::start("telemetry").await;
    let yaml = format!(
        "influxdb:\n  url: http://{}\n  api: v1\n  database: telemetry\n  flush_interval_ms: 100\n  gzip: false\n",
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
async fn influxdb_429_with_retry_after_pauses_every_writer_and_loses_nothing() {
    const REFUSE: usize = 3;
    const RETRY_AFTER: Duration = Duration::from_secs(1);
    let influx = Influx1::start("telemetry").await;
    let gate = horizon_e2e::throttle::Throttle::start(influx.addr, REFUSE, 1).await;
    // Small requests and four of them in flight, so that several writers
    // are refused together.
    let yaml = format!(
        "influxdb:\n  url: {}\n  api: v1\n  database: telemetry\n  flush_interval_ms: 50\n  batch_points: 20\n  max_concurrent_writes: 4\n",
        gate.url()
    );
    let relay = TestRelay::start(&yaml).await;
    let client = relay.client("throttled-node").await;
    let expected = sorted(send_points(&client, "throttled-node", 60).await);
    let got = eventually(
        || async { influx_rows(&influx.query("telemetry", "SELECT * FROM /.*/").await) },
        |r: &Vec<Expected>| r.len() >= expected.len(),
    )
    .await;
    assert_same(&got, &expected, false);

    let m = relay.scrape().await;
    let accepted = m.get("horizon_relay_points_accepted_total");
    let written = m.get("horizon_relay_influxdb_written_points_total");
    let dropped = m.get("horizon_relay_influxdb_dropped_points_total");
    assert_eq!(
        written + dropped,
        accepted,
        "every accepted point accounted for"
    );
    assert_eq!(dropped, 0.0, "nothing dropped: the buffer held it all");
    assert!(m.get("horizon_relay_influxdb_retries_total") >= REFUSE as f64);

    // No request went out while a Retry-After was running. Requests
    // already on their way when the refusal was sent may still arrive (at
    // most the other three slots); retries or new requests would be many
    // more: without the pause a refused request is retried within 200 ms,
    // and a new one is ready every 50 ms.
    let seen = gate.seen();
    assert_eq!(seen.refusals.len(), REFUSE);
    assert!(seen.requests.len() > REFUSE);
    for refusal in &seen.refusals {
        let early = seen
            .requests
            .iter()
            .filter(|r| *r > refusal && **r < *refusal + RETRY_AFTER)
            .count();
        assert!(
            early <= 3,
            "{early} requests within the Retry-After of a refusal: more than were in flight"
        );
    }
    client.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn influxdb_429_longer_than_the_buffer_lasts_drops_only_what_does_not_fit() {
    const RETRY_AFTER: Duration = Duration::from_secs(3);
    const BUFFER: usize = 40;
    let influx = Influx1::start("telemetry").await;
    let gate = horizon_e2e::throttle::Throttle::start(influx.addr, 1, RETRY_AFTER.as_secs()).await;
    // One request at a time: the first is refused, and while the database's
    // pause runs nothing is written, so the buffer (40 points) fills and
    // the rest of the 92 points sent at once are dropped.
    let yaml = format!(
        "influxdb:\n  url: {}\n  api: v1\n  database: telemetry\n  flush_interval_ms: 50\n  batch_points: 20\n  max_concurrent_writes: 1\n  max_buffered_points: {BUFFER}\n",
        gate.url()
    );
    let relay = TestRelay::start(&yaml).await;
    let client = relay.client("throttled-node").await;
    let sent = std::time::Instant::now();
    let expected = sorted(send_points(&client, "throttled-node", 30).await);
    assert!(
        sent.elapsed() < RETRY_AFTER,
        "the points must all be offered within the pause for this test to mean anything"
    );

    let m = influx_drained(&relay).await;
    let accepted = m.get("horizon_relay_points_accepted_total");
    let written = m.get("horizon_relay_influxdb_written_points_total");
    let dropped = m.get("horizon_relay_influxdb_dropped_points_total");
    assert_eq!(accepted, expected.len() as f64);
    assert_eq!(
        written + dropped,
        accepted,
        "every accepted point written or dropped, exactly"
    );
    assert_eq!(
        written, BUFFER as f64,
        "written: what the buffer held (four batches of ten), the refused request included"
    );

    // The database holds exactly the points counted as written, each one
    // of those sent, none twice.
    let got = eventually(
        || async { influx_rows(&influx.query("telemetry", "SELECT * FROM /.*/").await) },
        |r: &Vec<Expected>| r.len() >= written as usize,
    )
    .await;
    assert_eq!(got.len(), written as usize, "stored = written");
    for row in &got {
        assert!(expected.contains(row), "{row:?} was not sent");
    }
    let mut distinct = got.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), got.len(), "no point stored twice");

    // The refused request went out again only after the pause.
    let seen = gate.seen();
    assert_eq!(seen.refusals.len(), 1);
    let refusal = seen.refusals[0];
    let next = seen
        .requests
        .iter()
        .find(|r| **r > refusal)
        .expect("the refused request was sent again");
    assert!(
        *next >= refusal + RETRY_AFTER - Duration::from_millis(100),
        "sent again {:?} after the refusal, within its Retry-After",
        *next - refusal
    );
    client.close().await;
    relay.stop().await;
}
