//! The relay is down for 60 s while the agent scrapes; the agent is killed
//! with SIGKILL and restarted; the relay comes back. After a compaction,
//! every point the agent counted as collected is stored exactly once.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{AgentProc, Reply, Target, compact, node_certs};
use horizon_e2e::servers::free_port;
use horizon_e2e::{TestPki, TestRelay};

const SERIES: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_outage_and_sigkill_lose_nothing_and_duplicate_nothing() {
    let pki = TestPki::new();
    let relay = TestRelay::start_at(pki.clone(), "", None).await;
    let addr = relay.addr;
    let objects = relay.objects.clone();
    relay.stop().await; // down from the start

    // The exposition carries its own timestamps, one second apart per
    // request, in an hour that has ended (so the compactor takes it).
    let now_ms = horizon_shared::clock::unix_nanos_now() / 1_000_000;
    let base_ms = now_ms / 3_600_000 * 3_600_000 - 2 * 3_600_000 + 60_000;
    let serving = Arc::new(AtomicBool::new(true));
    let s2 = serving.clone();
    let target = Target::start(move |n| {
        if !s2.load(Ordering::SeqCst) {
            return Reply::Status(503);
        }
        let ts = base_ms + i64::try_from(n).unwrap() * 1000;
        let body: String = (0..SERIES)
            .map(|i| format!("outage_metric{{series=\"{i}\"}} {n} {ts}\n"))
            .collect();
        Reply::Ok("text/plain; version=0.0.4", body)
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let certs = node_certs(&pki, "node-outage", &dir.path().join("certs"));
    let mport = free_port();
    let c = certs.display();
    let config = format!(
        "relay:\n  addr: {addr}\n  server_name: localhost\n  max_backoff_secs: 1\nsecurity:\n  tls_cert_path: {c}/node.pem\n  tls_key_path: {c}/node-key.pem\n  tls_ca_path: {c}/ca.pem\nspool:\n  dir: spool\n  sync: never\n  segment_mib: 1\nscrape:\n  targets:\n    - {{url: {}, name: exporter, interval_secs: 1}}\ngpu:\n  enabled: false\nobservability:\n  metrics_addr: 127.0.0.1:{mport}\n",
        target.url()
    );
    let collected =
        |m: &common::Metrics| m.get("horizon_agent_points_collected_total{source=\"scrape\"}");
    let failed = |m: &common::Metrics| {
        m.get("horizon_agent_scrapes_total{target=\"exporter\",result=\"http_status\"}")
    };

    // Run 1: 60 s of scraping into the spool with no relay.
    let mut agent = AgentProc::start(dir.path(), &config, mport);
    agent
        .wait_for("the first scrape", 30, |m| collected(m) > 0.0)
        .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let m = agent.metrics().await.expect("agent metrics");
    assert_eq!(m.get("horizon_agent_points_acked_total"), 0.0);
    assert!(m.sum("horizon_agent_relay_connect_errors_total") > 0.0);
    // Freeze collection (the exporter answers 503), read the agent's own
    // count, then kill it.
    serving.store(false, Ordering::SeqCst);
    let m = agent
        .wait_for("a failed scrape", 30, |m| failed(m) > 0.0)
        .await;
    let c1 = collected(&m);
    assert!(c1 >= 30.0 * SERIES as f64, "{c1} points in 60 s");
    assert_eq!(c1 % SERIES as f64, 0.0);
    agent.kill();

    // Run 2: same spool, relay still down for a few more scrapes.
    serving.store(true, Ordering::SeqCst);
    let mut agent = AgentProc::start(dir.path(), &config, mport);
    let m = agent
        .wait_for("five scrapes after the restart", 30, |m| {
            collected(m) >= 5.0 * SERIES as f64
        })
        .await;
    assert!(m.get("horizon_agent_spool_replayed_records") > 0.0);
    serving.store(false, Ordering::SeqCst);
    let before = failed(&m);
    let m = agent
        .wait_for("a failed scrape", 30, |m| failed(m) > before)
        .await;
    let c2 = collected(&m);

    // The relay comes back on the same address.
    let relay = TestRelay::start_at(pki.clone(), "", Some(addr)).await;
    let m = agent
        .wait_for("the spool drained", 120, |m| {
            m.get("horizon_agent_backlog_batches") == 0.0
                && m.get("horizon_agent_points_acked_total") >= c1 + c2
        })
        .await;
    assert_eq!(m.sum("horizon_agent_points_rejected_total"), 0.0);
    agent.terminate();
    relay.stop().await;

    compact(&objects);
    let data = horizon_e2e::read_parquet(&["local", objects.join("compacted").to_str().unwrap()]);
    let rows: Vec<_> = data
        .rows
        .iter()
        .filter(|r| r["node"] == "node-outage")
        .collect();
    let mut keys = BTreeSet::new();
    for r in &rows {
        assert_eq!(r["metric"], "outage_metric");
        let t = r["time"].as_i64().unwrap();
        let n = (t / 1_000_000 - base_ms) / 1000;
        assert_eq!(
            r["value"].as_f64().unwrap(),
            n as f64,
            "value of the scrape at {t}"
        );
        let series = r["labels"]["series"].as_str().unwrap().to_owned();
        assert!(keys.insert((series, t)), "stored twice: {r}");
    }
    assert_eq!(rows.len() as f64, c1 + c2, "collected {c1} + {c2}");
}
