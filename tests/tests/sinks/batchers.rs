//! Several micro-batchers with flushes in flight: every point stored once,
//! a node's points in order, and durable acks that wait for their own
//! objects only, even when a later flush is stored first.

use std::time::Instant;

use horizon_e2e::put_hold::PutHold;
use horizon_shared::client::PendingAck;

use super::*;

/// Each node's points, by series: (node, metric) → values in file order.
type Runs = BTreeMap<(String, String), Vec<i64>>;

/// Splits pyarrow's rows into their files (the reader lists files in path
/// order and their rows in file order).
fn rows_by_file(data: &horizon_e2e::ParquetDataset) -> Vec<(String, Runs)> {
    let mut rows = data.rows.iter();
    let mut out = Vec::new();
    for f in &data.files {
        let mut runs = Runs::new();
        for r in rows.by_ref().take(f["rows"].as_u64().unwrap() as usize) {
            runs.entry((
                r["node"].as_str().unwrap().to_owned(),
                r["metric"].as_str().unwrap().to_owned(),
            ))
            .or_default()
            .push(r["value"].as_f64().unwrap() as i64);
        }
        out.push((f["path"].as_str().unwrap().to_owned(), runs));
    }
    assert!(rows.next().is_none(), "rows beyond the files' counts");
    out
}

/// Eight nodes send at once to four batchers that flush every 40 rows (and
/// by age): every point is stored exactly once; within each object a
/// node's points of a series are in the order sent; and across the objects
/// of an hour, in name (sequence) order, a node's points never go back.
#[tokio::test]
async fn sharded_batchers_store_every_point_once_and_keep_each_nodes_order() {
    const NODES: usize = 8;
    const PER_SERIES: i64 = 200;
    let relay = TestRelay::start("parquet:\n  batchers: 4\n  flush_rows: 40\n").await;
    let mut senders = Vec::new();
    for n in 0..NODES {
        let client = relay.client(&format!("gpu-node-{n}")).await;
        senders.push(tokio::spawn(async move {
            let a = client.series("gpu_util", &[("gpu", "0")]).unwrap();
            let b = client.series("gpu_temp", &[("gpu", "0")]).unwrap();
            let t0 = unix_nanos_now();
            let mut pending = Vec::new();
            for chunk in 0..PER_SERIES / 5 {
                let points = (chunk * 5..chunk * 5 + 5)
                    .flat_map(|i| {
                        let t = t0 + i * 1_000_000;
                        [Point::new(a, t, i as f64), Point::new(b, t, i as f64)]
                    })
                    .collect();
                pending.push(client.send(Batch { points }).await.unwrap());
            }
            for p in pending {
                let ack = p.await.unwrap().ack;
                assert_eq!(ack.accepted, 10, "{ack:?}");
                assert_eq!(ack.durability, Durability::Durable as i32);
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for s in senders {
        clients.push(s.await.unwrap());
    }
    let m = relay.scrape().await;
    assert_eq!(m.get("horizon_relay_sink_batchers"), 4.0);
    assert_eq!(
        m.get("horizon_relay_points_written_total"),
        (NODES as i64 * PER_SERIES * 2) as f64
    );

    let data = read_parquet(&["local", relay.objects.to_str().unwrap()]);
    let files = rows_by_file(&data);
    assert!(
        files.len() >= NODES,
        "flushes of 40 rows: {} objects",
        files.len()
    );
    // Exactly once.
    let mut all = BTreeMap::<(String, String), Vec<i64>>::new();
    for (_, runs) in &files {
        for (k, v) in runs {
            all.entry(k.clone()).or_default().extend(v);
        }
    }
    assert_eq!(all.len(), NODES * 2, "every node's two series");
    for (k, mut v) in all {
        v.sort_unstable();
        assert_eq!(
            v,
            (0..PER_SERIES).collect::<Vec<_>>(),
            "{k:?} stored once each"
        );
    }
    // In order within each object, and from one object to the next of the
    // same hour (object names end in the relay's sequence number).
    let mut last = BTreeMap::<(String, String, String), (i64, String)>::new();
    for (path, runs) in &files {
        let partition = path.rsplit_once('/').unwrap().0.to_owned();
        for ((node, metric), values) in runs {
            assert!(
                values.windows(2).all(|w| w[0] < w[1]),
                "{path}: {node} {metric} out of order: {values:?}"
            );
            let key = (partition.clone(), node.clone(), metric.clone());
            if let Some((prev, prev_path)) = last.get(&key) {
                assert!(
                    *prev < values[0],
                    "{node} {metric}: {prev_path} ends at {prev}, the later {path} starts at {}",
                    values[0]
                );
            }
            last.insert(key, (*values.last().unwrap(), path.clone()));
        }
    }
    for c in clients {
        c.close().await;
    }
    relay.stop().await;
}

/// Sends `values` as one batch of `series` and records when its ack arrives.
async fn send_timed(
    client: &Client,
    series: SeriesId,
    values: std::ops::Range<i32>,
) -> tokio::task::JoinHandle<Timed> {
    let p: PendingAck = client
        .send(Batch {
            points: values.map(|v| Point::now(series, f64::from(v))).collect(),
        })
        .await
        .unwrap();
    tokio::spawn(async move {
        let acked = p.await.unwrap();
        (acked, Instant::now())
    })
}

type Timed = (horizon_shared::client::Acked, Instant);

async fn wait_acked(h: tokio::task::JoinHandle<Timed>) -> Timed {
    tokio::time::timeout(Duration::from_secs(30), h)
        .await
        .expect("acked")
        .unwrap()
}

/// The first PUT (node A's first batch, a flush of its own) is held back by
/// a forwarder in front of S3 until a later PUT has been stored, and 700 ms
/// more. Node B's batch, flushed later, is stored and acked meanwhile; node
/// A's first batch, and its second (whose flush was also stored first, but
/// whose ack follows the first in its stream), are acked only after the
/// held PUT was answered.
#[tokio::test]
async fn durable_acks_wait_for_their_own_object_even_when_a_later_flush_is_stored_first() {
    let moto = Moto::start("telemetry").await;
    let hold = PutHold::start(
        moto.addr,
        Duration::from_millis(700),
        Duration::from_secs(8),
    )
    .await;
    let relay = TestRelay::start(&s3_yaml(
        &hold.url(),
        "telemetry",
        "parquet:\n  batchers: 2\n  flush_rows: 10\n  rotation_interval_secs: 60\n",
    ))
    .await;
    let a = relay.client("gpu-node-a").await;
    let b = relay.client("gpu-node-b").await;
    let sa = a.series("gpu_util", &[]).unwrap();
    let sb = b.series("gpu_util", &[]).unwrap();

    let a1 = send_timed(&a, sa, 0..10).await;
    assert!(
        hold.held_started(Duration::from_secs(20)).await,
        "the first flush reaches the store"
    );
    let a2 = send_timed(&a, sa, 10..20).await;
    let b1 = send_timed(&b, sb, 100..110).await;
    let (a1, a1_at) = wait_acked(a1).await;
    let (a2, a2_at) = wait_acked(a2).await;
    let (b1, b1_at) = wait_acked(b1).await;
    for (name, ack) in [("a1", &a1), ("a2", &a2), ("b1", &b1)] {
        assert_eq!(ack.ack.accepted, 10, "{name}: {:?}", ack.ack);
        assert_eq!(ack.ack.durability, Durability::Durable as i32, "{name}");
    }

    // The held PUT is answered by now if the acks waited for it; if they
    // did not, wait for it here so the assertions below say what went wrong.
    let stored = eventually(
        || std::future::ready(hold.stored()),
        |s| s.iter().any(|p| p.held),
    )
    .await;
    let held = stored
        .iter()
        .find(|p| p.held)
        .expect("the held PUT was answered");
    assert_eq!(held.status / 100, 2, "{held:?}");
    assert!(
        stored
            .iter()
            .any(|p| !p.held && p.status / 100 == 2 && p.at < held.at),
        "a later flush was stored before the first: {stored:?}"
    );
    assert!(
        a1_at > held.at,
        "a1 acked {:?} before its object was stored",
        held.at - a1_at
    );
    assert!(a2_at > held.at, "a2 acked before a1's object was stored");
    assert!(
        b1_at < held.at,
        "b1's flush was stored first, its ack did not wait for a1's object"
    );

    let data = read_parquet(&["s3", &moto.addr.to_string(), "telemetry", "fleet-a"]);
    let mut values: Vec<i64> = data
        .rows
        .iter()
        .map(|r| r["value"].as_f64().unwrap() as i64)
        .collect();
    values.sort_unstable();
    let want: Vec<i64> = (0..20).chain(100..110).collect();
    assert_eq!(values, want, "every acked point stored once");
    a.close().await;
    b.close().await;
    relay.stop().await;
}
