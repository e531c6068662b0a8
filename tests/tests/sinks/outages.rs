//! Outages: the object store and InfluxDB going away, and readiness while the store fails.

use super::*;

/// Two batchers, two PUTs at a time, flushes of 5 rows: during the outage
/// four flushes are in flight (`batchers + max_concurrent_puts`), then the
/// node's batcher fills and stops taking batches, then the queue fills.
#[tokio::test]
async fn s3_outage_holds_acks_pushes_back_and_loses_nothing() {
    let moto = Moto::start("telemetry").await;
    let gate = Gate::start(moto.addr).await;
    let relay = TestRelay::start(&s3_yaml(
        &gate.url(),
        "telemetry",
        "limits:\n  backpressure_threshold: 4\nparquet:\n  batchers: 2\n  max_concurrent_puts: 2\n  flush_rows: 5\n",
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
        // At most 20 fill the four flushes whose writes then hang (fewer
        // when a flush is cut by age), 5 more fill the batcher, which waits
        // for a flush slot; of the rest, 4 fill the queue, the next waits
        // for room and the stream stops being read.
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
        m.get("horizon_relay_sink_flushes_in_flight"),
        4.0,
        "every flush slot taken: batchers + max_concurrent_puts"
    );
    assert!(m.get("horizon_relay_object_puts_in_flight") <= 2.0);
    assert!(
        m.get("horizon_relay_sink_buffered_rows") >= 5.0,
        "the full batcher holds its rows"
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
    let m = influx_drained(&relay).await;
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
