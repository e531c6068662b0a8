//! A real exporter into a real relay: Debian's `prometheus-node-exporter`,
//! scraped by the agent binary through a recording proxy, sent to a relay
//! running in the test. Every sample of the scrape, as Python's
//! `prometheus_client` parser reads the very body the agent got, is in the
//! relay's Parquet with the same name, labels and value, and with the
//! metric type of the family the parser puts it in.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{AgentProc, Reply, Target, node_certs, python_parse};
use horizon_e2e::TestRelay;
use horizon_e2e::servers::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_of_a_node_exporter_scrape_is_stored() {
    let relay = TestRelay::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let ne_port = free_port();
    let mut ne = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-node-exporter is installed (infra/dev/install-test-deps.sh)");
    // A pass-through proxy: each scrape is fetched live from node_exporter,
    // and the body the agent got is recorded.
    let addr = format!("127.0.0.1:{ne_port}");
    let mut ready = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "node_exporter did not start");
    let target =
        Target::start(move |_| Reply::Ok("text/plain; version=0.0.4; charset=utf-8", fetch(&addr)))
            .await;
    let certs = node_certs(&relay.pki, "gpu-node-ne", &dir.path().join("certs"));
    let mport = free_port();
    let agent = AgentProc::start(
        dir.path(),
        &format!(
            "relay:\n  addr: {}\n  server_name: localhost\n  max_backoff_secs: 1\nsecurity:\n  tls_cert_path: {c}/node.pem\n  tls_key_path: {c}/node-key.pem\n  tls_ca_path: {c}/ca.pem\nspool:\n  dir: spool\n  sync: every_batch\nscrape:\n  targets:\n    - url: {}\n      name: node\n      interval_secs: 3600\ngpu:\n  enabled: false\nobservability:\n  metrics_addr: 127.0.0.1:{mport}\n",
            relay.addr,
            target.url(),
            c = certs.display()
        ),
        mport,
    );
    let m = agent
        .wait_for("the scrape acked", 60, |m| {
            let c = m.get("horizon_agent_points_collected_total{source=\"scrape\"}");
            c > 0.0 && m.get("horizon_agent_points_acked_total") == c
        })
        .await;
    assert_eq!(target.requests(), 1, "one scrape");
    let body = target.served.lock().unwrap()[0].clone();
    let collected = m.get("horizon_agent_points_collected_total{source=\"scrape\"}") as usize;

    // The independent reading of the same body.
    let expected = python_parse(&body);
    let non_finite = expected.iter().filter(|s| !s.value.is_finite()).count();
    assert_eq!(
        m.get("horizon_agent_points_dropped_total{reason=\"non_finite\"}") as usize,
        non_finite
    );
    let mut want: Vec<(String, BTreeMap<String, String>, u64, String)> = expected
        .into_iter()
        .filter(|s| s.value.is_finite())
        .map(|s| {
            // Prometheus treats an empty label value as no label.
            let labels = s
                .labels
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect();
            // The column's value for the family's type (docs/data.md).
            let family_type = match s.family_type.as_str() {
                t @ ("counter" | "gauge" | "histogram" | "summary") => t,
                "gaugehistogram" | "info" | "stateset" => "gauge",
                _ => "unknown",
            };
            (s.name, labels, s.value.to_bits(), family_type.to_owned())
        })
        .collect();
    let typed = want.iter().filter(|s| s.3 != "unknown").count();
    assert!(
        typed * 2 > want.len(),
        "node_exporter declares the types of most of its {} samples ({typed})",
        want.len()
    );
    assert!(
        want.len() > 200,
        "node_exporter served {} samples",
        want.len()
    );
    assert_eq!(collected, want.len());

    // Durable acks: what was acked is in Parquet.
    let data = horizon_e2e::read_parquet(&["local", relay.objects.to_str().unwrap()]);
    let mut got: Vec<(String, BTreeMap<String, String>, u64, String)> = data
        .rows
        .iter()
        .filter(|r| r["node"] == "gpu-node-ne")
        .map(|r| {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(r["labels"].clone()).unwrap();
            (
                r["metric"].as_str().unwrap().to_owned(),
                labels,
                r["value"].as_f64().unwrap().to_bits(),
                r["metric_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    let _ = ne.kill();
    let _ = ne.wait();
    relay.stop().await;
}

/// A blocking HTTP/1.0 GET of /metrics (the proxy's upstream fetch).
fn fetch(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("node_exporter");
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAccept: text/plain;version=0.0.4\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}
