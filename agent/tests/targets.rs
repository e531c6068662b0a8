//! Targets that hang, return 500 or return garbage are counted, logged by
//! name with the reason, and do not delay the other targets.

#![allow(clippy::unwrap_used)]

mod common;

use common::{AgentProc, Reply, Target, node_certs};
use horizon_e2e::TestRelay;
use horizon_e2e::servers::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_are_counted_and_logged_and_delay_no_other() {
    let relay = TestRelay::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let hang = Target::start(|_| Reply::Hang).await;
    let e500 = Target::start(|_| Reply::Status(500)).await;
    let garbage = Target::start(|_| {
        Reply::Ok(
            "text/html",
            "<html><body>Service Unavailable</body></html>\n".into(),
        )
    })
    .await;
    let good = Target::start(|n| Reply::Ok("text/plain", format!("requests_seen {n}\n"))).await;
    let certs = node_certs(&relay.pki, "node-targets", &dir.path().join("certs"));
    let mport = free_port();
    let c = certs.display();
    let agent = AgentProc::start(
        dir.path(),
        &format!(
            "relay:\n  addr: {}\n  server_name: localhost\nsecurity:\n  tls_cert_path: {c}/node.pem\n  tls_key_path: {c}/node-key.pem\n  tls_ca_path: {c}/ca.pem\nspool:\n  dir: spool\nscrape:\n  targets:\n    - {{url: {}, name: hang, interval_secs: 600, timeout_secs: 600}}\n    - {{url: {}, name: e500, interval_secs: 0.2}}\n    - {{url: {}, name: garbage, interval_secs: 0.2}}\n    - {{url: {}, name: good, interval_secs: 0.2}}\ngpu:\n  enabled: false\nobservability:\n  metrics_addr: 127.0.0.1:{mport}\n",
            relay.addr,
            hang.url(),
            e500.url(),
            garbage.url(),
            good.url(),
        ),
        mport,
    );
    let m = agent
        .wait_for("five good scrapes and three of each bad one", 60, |m| {
            m.get("horizon_agent_scrapes_total{target=\"good\",result=\"ok\"}") >= 5.0
                && m.get("horizon_agent_scrapes_total{target=\"e500\",result=\"http_status\"}")
                    >= 3.0
                && m.get("horizon_agent_scrapes_total{target=\"garbage\",result=\"parse\"}") >= 3.0
        })
        .await;
    // The hanging target's first scrape is still waiting on its 600 s
    // timeout: it has not finished once, yet the others went on.
    assert_eq!(hang.requests(), 1);
    assert_eq!(m.sum("horizon_agent_scrapes_total{target=\"hang\""), 0.0);
    assert_eq!(m.get("horizon_agent_target_up{target=\"good\"}"), 1.0);
    assert_eq!(m.get("horizon_agent_target_up{target=\"e500\"}"), 0.0);
    assert_eq!(m.get("horizon_agent_target_up{target=\"garbage\"}"), 0.0);
    // Good scrapes were delivered.
    agent
        .wait_for("good points acked", 30, |m| {
            m.get("horizon_agent_points_acked_total") >= 5.0
        })
        .await;
    let log = agent.log_text();
    for (target, why) in [("e500", "HTTP status 500"), ("garbage", "no sample parsed")] {
        assert!(
            log.lines().any(|l| l.contains("scrape failed")
                && l.contains(&format!("target={target}"))
                && l.contains(why)),
            "no log line naming {target} and {why:?}:\n{log}"
        );
    }
    drop(agent);
    relay.stop().await;
}
