//! SIGTERM drain: everything acked is stored.

use super::*;

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

/// Four batchers, flushes of 10 rows, every PUT 300 ms long: SIGTERM
/// arrives while several flushes are uploading. Every durably acked point
/// is stored, none twice, and nothing is stored that was not sent.
#[tokio::test]
async fn sigterm_with_flushes_in_flight_stores_everything_it_acked() {
    const NODES: i64 = 4;
    let pki = TestPki::new();
    let relay = TestRelay::start_at(
        pki.clone(),
        "parquet:\n  rotation_interval_secs: 60\n  batchers: 4\n  flush_rows: 10\n  debug_put_latency_ms: 300\n",
        None,
    )
    .await;
    let objects = relay.objects.clone();
    let mut pending = Vec::new();
    let mut clients = Vec::new();
    for n in 0..NODES {
        let client = relay.client(&format!("gpu-node-{n}")).await;
        let s = client.series("gpu_util", &[]).unwrap();
        let values = (n * 1000) as i32..(n * 1000 + 200) as i32;
        for (v, p) in values.clone().zip(queue_values(&client, s, values).await) {
            pending.push((i64::from(v), p));
        }
        clients.push(client);
    }
    let m = eventually(
        || relay.scrape(),
        |m| m.get("horizon_relay_sink_flushes_in_flight") >= 2.0,
    )
    .await;
    assert!(
        m.get("horizon_relay_sink_flushes_in_flight") >= 2.0,
        "flushes in flight when the relay stops"
    );
    relay.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut durable = BTreeSet::new();
    for (v, p) in pending {
        if let Ok(Ok(a)) = tokio::time::timeout(Duration::from_millis(50), p).await {
            if a.ack.durability == Durability::Durable as i32 && a.ack.accepted == 1 {
                durable.insert(v);
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
    let stored: Vec<i64> = data
        .rows
        .iter()
        .map(|r| r["value"].as_f64().unwrap() as i64)
        .collect();
    let unique: BTreeSet<i64> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "no point stored twice");
    assert!(
        durable.is_subset(&unique),
        "acked durably but missing: {:?}",
        durable.difference(&unique).collect::<Vec<_>>()
    );
    assert!(
        unique.iter().all(|v| v % 1000 < 200 && *v / 1000 < NODES),
        "only what was sent"
    );
    drop(clients);
}
