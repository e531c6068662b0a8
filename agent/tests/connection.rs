//! What an operator alerts on, against a real relay that goes away and
//! comes back: `relay_connected` follows the connection, every failed
//! connect is counted by reason, and the backlog gauges grow while the
//! relay is gone and drain to 0 once it is back. A relay whose certificate
//! the agent does not trust is counted as `tls`.

#![allow(clippy::unwrap_used)]

mod common;

use common::{AgentProc, Metrics, Reply, Target, node_certs};
use horizon_e2e::servers::free_port;
use horizon_e2e::{TestPki, TestRelay};

fn config(relay: std::net::SocketAddr, certs: &std::path::Path, url: &str, mport: u16) -> String {
    let c = certs.display();
    format!(
        "relay:\n  addr: {relay}\n  server_name: localhost\nsecurity:\n  tls_cert_path: {c}/node.pem\n  tls_key_path: {c}/node-key.pem\n  tls_ca_path: {c}/ca.pem\nspool:\n  dir: spool\n  sync: never\nscrape:\n  targets:\n    - {{url: {url}, name: exporter, interval_secs: 1}}\ngpu:\n  enabled: false\nobservability:\n  metrics_addr: 127.0.0.1:{mport}\n"
    )
}

fn errors(m: &Metrics, reason: &str) -> f64 {
    m.get(&format!(
        "horizon_agent_relay_connect_errors_total{{reason=\"{reason}\"}}"
    ))
}

fn backlog(m: &Metrics) -> (f64, f64, f64) {
    (
        m.get("horizon_agent_backlog_batches"),
        m.get("horizon_agent_backlog_points"),
        m.get("horizon_agent_backlog_oldest_age_seconds"),
    )
}

/// Every `horizon_agent_*` name and `reason` value in the agents' alert
/// rules is on the agent's metrics page.
fn rules_query_exported_metrics(m: &Metrics) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/grafana/alerts/agents.yaml"
    );
    let doc = common::grafana::yaml_file(std::path::Path::new(path));
    let mut names = 0;
    for r in doc["groups"][0]["rules"].as_array().unwrap() {
        let expr = r["data"][0]["model"]["expr"].as_str().unwrap();
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("horizon_agent_"))
        {
            assert!(
                m.0.keys()
                    .any(|k| k == name || k.starts_with(&format!("{name}{{"))),
                "{name} is not exported"
            );
            names += 1;
        }
    }
    assert_eq!(names, 4);
}

async fn exporter() -> Target {
    Target::start(|n| {
        Reply::Ok(
            "text/plain; version=0.0.4",
            format!("conn_metric{{series=\"a\"}} {n}\nconn_metric{{series=\"b\"}} {n}\n"),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shows_in_connected_connect_errors_and_the_backlog() {
    let pki = TestPki::new();
    let relay = TestRelay::start_at(pki.clone(), "", None).await;
    let addr = relay.addr;
    let target = exporter().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = node_certs(&pki, "node-conn", &dir.path().join("certs"));
    let mport = free_port();
    let agent = AgentProc::start(
        dir.path(),
        &config(addr, &certs, &target.url(), mport),
        mport,
    );

    let m = agent
        .wait_for("connected and delivering", 60, |m| {
            m.get("horizon_agent_relay_connected") == 1.0
                && m.get("horizon_agent_points_acked_total") >= 4.0
        })
        .await;
    for reason in [
        "timeout",
        "refused",
        "tls",
        "dns",
        "unreachable",
        "closed",
        "other",
    ] {
        assert!(
            m.0.contains_key(&format!(
                "horizon_agent_relay_connect_errors_total{{reason=\"{reason}\"}}"
            )),
            "every reason is exported from the start: {reason}"
        );
    }
    assert_eq!(m.sum("horizon_agent_relay_connect_errors_total"), 0.0);

    // The relay goes away: the gauge drops, failed reconnects are counted,
    // and the backlog and the age of its oldest point grow.
    relay.stop().await;
    let down = agent
        .wait_for("the loss seen and a reconnect failed", 60, |m| {
            m.get("horizon_agent_relay_connected") == 0.0
                && errors(m, "timeout") + errors(m, "unreachable") >= 1.0
                && backlog(m).1 >= 2.0
        })
        .await;
    let (batches, points, age) = backlog(&down);
    assert!(batches >= 1.0, "{batches} batches waiting");
    // (A reconnect that reaches the relay while it drains is `refused`.)
    assert_eq!(
        errors(&down, "tls") + errors(&down, "dns") + errors(&down, "other"),
        0.0,
        "a relay that is down is a timeout, not a certificate or name problem"
    );
    let later = agent
        .wait_for("the backlog grown", 60, |m| {
            let (b, p, a) = backlog(m);
            b > batches && p > points && a > age
        })
        .await;
    assert_eq!(later.get("horizon_agent_relay_connected"), 0.0);
    rules_query_exported_metrics(&later);
    assert!(
        later.sum("horizon_agent_relay_connect_errors_total")
            >= down.sum("horizon_agent_relay_connect_errors_total")
    );

    // Back on the same address: connected again, and everything drains.
    let relay = TestRelay::start_at(pki.clone(), "", Some(addr)).await;
    let back = agent
        .wait_for("reconnected and the backlog drained", 90, |m| {
            m.get("horizon_agent_relay_connected") == 1.0 && backlog(m) == (0.0, 0.0, 0.0)
        })
        .await;
    assert!(
        back.get("horizon_agent_points_acked_total")
            >= later.get("horizon_agent_points_collected_total{source=\"scrape\"}"),
        "what waited was delivered"
    );
    assert_eq!(back.get("horizon_agent_backlog_bytes"), 0.0);
    // What is on disk is more than what waits: acked records stay in the
    // segment being written.
    assert!(back.get("horizon_agent_spool_bytes") > 0.0);
    assert!(back.get("horizon_agent_spool_records") > 0.0);
    drop(agent);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_certificate_from_another_ca_is_counted_as_tls() {
    // The agent trusts its own CA; the relay's certificate comes from another.
    let ours = TestPki::new();
    let relay = TestRelay::start_at(TestPki::new(), "", None).await;
    let target = exporter().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = node_certs(&ours, "node-tls", &dir.path().join("certs"));
    let mport = free_port();
    let agent = AgentProc::start(
        dir.path(),
        &config(relay.addr, &certs, &target.url(), mport),
        mport,
    );
    let m = agent
        .wait_for("two attempts refused for TLS", 60, |m| {
            errors(m, "tls") >= 2.0
        })
        .await;
    assert_eq!(m.get("horizon_agent_relay_connected"), 0.0);
    assert_eq!(m.get("horizon_agent_points_acked_total"), 0.0);
    assert_eq!(
        m.sum("horizon_agent_relay_connect_errors_total"),
        errors(&m, "tls"),
        "every failure was the certificate"
    );
    assert!(
        agent.log_text().contains("reason=tls"),
        "{}",
        agent.log_text()
    );
    drop(agent);
    relay.stop().await;
}
