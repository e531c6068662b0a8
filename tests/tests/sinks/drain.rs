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
