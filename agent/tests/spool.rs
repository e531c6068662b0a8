//! The spool through the agent binary: a torn last record after a SIGKILL
//! loses only that record, and the points spooled before the kill keep
//! their metric type; a full spool drops the oldest batches and the count
//! is exact.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{AgentProc, Metrics, Reply, Target, node_certs};
use horizon_e2e::servers::free_port;
use horizon_e2e::{TestPki, TestRelay};

/// A target serving `series` samples per request, each with value n (the
/// request number) and its own timestamp; answers 503 while `serving` is off.
async fn counting_target(series: u64, serving: Arc<AtomicBool>) -> Target {
    let base_ms = horizon_shared::clock::unix_nanos_now() / 1_000_000 - 3_600_000;
    Target::start(move |n| {
        if !serving.load(Ordering::SeqCst) {
            return Reply::Status(503);
        }
        let ts = base_ms + i64::try_from(n).unwrap();
        let body: String = std::iter::once("# TYPE spool_test_metric counter\n".to_owned())
            .chain((0..series).map(|i| format!("spool_test_metric{{series=\"{i}\"}} {n} {ts}\n")))
            .collect();
        Reply::Ok("text/plain; version=0.0.4", body)
    })
    .await
}

fn config(
    addr: std::net::SocketAddr,
    certs: &std::path::Path,
    url: &str,
    interval: f64,
    spool: &str,
    mport: u16,
) -> String {
    let c = certs.display();
    format!(
        "relay:\n  addr: {addr}\n  server_name: localhost\n  max_backoff_secs: 1\nsecurity:\n  tls_cert_path: {c}/node.pem\n  tls_key_path: {c}/node-key.pem\n  tls_ca_path: {c}/ca.pem\nspool:\n  dir: spool\n{spool}scrape:\n  targets:\n    - {{url: {url}, name: t, interval_secs: {interval}}}\ngpu:\n  enabled: false\nobservability:\n  metrics_addr: 127.0.0.1:{mport}\n"
    )
}

/// Request numbers stored for `node`, with how many rows each has. Every
/// row is of the target's counter: the type its `# TYPE` line gave, kept
/// in the spool, across the agent's restarts.
fn stored(relay_objects: &std::path::Path, node: &str) -> BTreeMap<u64, usize> {
    let data = horizon_e2e::read_parquet(&["local", relay_objects.to_str().unwrap()]);
    let mut by_n = BTreeMap::new();
    for r in data.rows.iter().filter(|r| r["node"] == node) {
        assert_eq!(r["metric_type"], "counter", "{r}");
        *by_n.entry(r["value"].as_f64().unwrap() as u64).or_insert(0) += 1;
    }
    by_n
}

fn collected(m: &Metrics) -> f64 {
    m.get("horizon_agent_points_collected_total{source=\"scrape\"}")
}

fn failed(m: &Metrics) -> f64 {
    m.get("horizon_agent_scrapes_total{target=\"t\",result=\"http_status\"}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_loses_only_that_record() {
    let pki = TestPki::new();
    let relay = TestRelay::start_at(pki.clone(), "", None).await;
    let (addr, objects) = (relay.addr, relay.objects.clone());
    relay.stop().await;
    let serving = Arc::new(AtomicBool::new(true));
    let target = counting_target(10, serving.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = node_certs(&pki, "node-torn", &dir.path().join("certs"));
    let mport = free_port();
    let cfg = config(
        addr,
        &certs,
        &target.url(),
        0.2,
        "  sync: every_batch\n",
        mport,
    );

    let mut agent = AgentProc::start(dir.path(), &cfg, mport);
    agent
        .wait_for("20 scrapes", 60, |m| collected(m) >= 200.0)
        .await;
    serving.store(false, Ordering::SeqCst);
    let m = agent
        .wait_for("a failed scrape", 30, |m| failed(m) > 0.0)
        .await;
    let c1 = collected(&m);
    agent.kill();

    // Tear the last record: cut 7 bytes off the end of the last segment.
    let spool = dir.path().join("spool");
    let mut segs: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    let relay = TestRelay::start_at(pki.clone(), "", Some(addr)).await;
    let agent = AgentProc::start(dir.path(), &cfg, mport);
    let m = agent
        .wait_for("the spool drained", 60, |m| {
            m.get("horizon_agent_backlog_batches") == 0.0
                && m.get("horizon_agent_points_acked_total") >= c1 - 10.0
        })
        .await;
    assert_eq!(m.get("horizon_agent_spool_torn_records_total"), 1.0);
    assert_eq!(m.get("horizon_agent_points_acked_total"), c1 - 10.0);
    drop(agent);
    relay.stop().await;
    // Every scrape but the last (the torn record) is stored, complete.
    let by_n = stored(&objects, "node-torn");
    let scrapes = (c1 / 10.0) as u64;
    assert_eq!(by_n.len() as u64, scrapes - 1);
    assert!(by_n.values().all(|rows| *rows == 10), "{by_n:?}");
    let last_n = *by_n.keys().last().unwrap();
    assert_eq!(
        by_n.keys().copied().collect::<Vec<_>>(),
        (last_n + 1 - (scrapes - 1)..=last_n).collect::<Vec<_>>()
    );
    // The torn one was the newest: one more scrape was served after `last_n`.
    assert_eq!(target.served.lock().unwrap().len() as u64, scrapes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_the_oldest_and_counts_exactly() {
    let pki = TestPki::new();
    let relay = TestRelay::start_at(pki.clone(), "", None).await;
    let (addr, objects) = (relay.addr, relay.objects.clone());
    relay.stop().await;
    let serving = Arc::new(AtomicBool::new(true));
    // 2000 samples per scrape (two 1000-point records, ~90 KB).
    let target = counting_target(2000, serving.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = node_certs(&pki, "node-full", &dir.path().join("certs"));
    let mport = free_port();
    let cfg = config(
        addr,
        &certs,
        &target.url(),
        0.1,
        "  sync: never\n  max_mib: 1\n  segment_mib: 1\n",
        mport,
    );

    let agent = AgentProc::start(dir.path(), &cfg, mport);
    agent
        .wait_for("the spool to drop twice", 120, |m| {
            m.get("horizon_agent_spool_dropped_records_total") >= 2.0
        })
        .await;
    serving.store(false, Ordering::SeqCst);
    let m = agent
        .wait_for("a failed scrape", 30, |m| failed(m) > 0.0)
        .await;
    let (c, dropped) = (
        collected(&m),
        m.get("horizon_agent_spool_dropped_points_total"),
    );
    assert!(dropped > 0.0 && dropped < c, "{dropped} of {c}");

    let relay = TestRelay::start_at(pki.clone(), "", Some(addr)).await;
    let m = agent
        .wait_for("the spool drained", 60, |m| {
            m.get("horizon_agent_backlog_batches") == 0.0
                && m.get("horizon_agent_points_acked_total") + dropped >= c
        })
        .await;
    let acked = m.get("horizon_agent_points_acked_total");
    assert_eq!(
        acked + dropped,
        c,
        "acked {acked} + dropped {dropped} = collected {c}"
    );
    drop(agent);
    relay.stop().await;
    // What was kept is the newest: every scrape from some point on, complete
    // except possibly the oldest kept (its first record may be dropped).
    let by_n = stored(&objects, "node-full");
    assert_eq!(by_n.values().sum::<usize>() as f64, acked);
    let last_n = *by_n.keys().last().unwrap();
    let first_n = *by_n.keys().next().unwrap();
    assert!(first_n > 0, "the oldest scrapes were dropped");
    assert_eq!(by_n.len() as u64, last_n - first_n + 1, "no gap");
    for (n, rows) in &by_n {
        assert!(
            *rows == 2000 || (*n == first_n && *rows == 1000),
            "scrape {n}: {rows} rows"
        );
    }
    assert_eq!(target.served.lock().unwrap().len() as u64, last_n + 1);
}
