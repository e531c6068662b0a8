//! The agent binary's log, written to a file: no colour codes (they are for
//! a terminal), and a flag that lowers another setting says so, naming both
//! with their values.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};

use common::{Metrics, Reply, Target, node_certs};
use horizon_e2e::TestPki;
use horizon_e2e::servers::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_file_has_no_colour_codes_and_names_a_lowered_setting() {
    let target =
        Target::start(|n| Reply::Ok("text/plain; version=0.0.4", format!("log_metric {n}\n")))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let certs = node_certs(&TestPki::new(), "node-logs", &dir.path().join("certs"));
    let mport = free_port();
    // No relay on this port: the agent also logs its failed connects.
    let relay = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = certs.display();
    let cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "relay:\n  addr: {relay}\n  server_name: localhost\nsecurity:\n  tls_cert_path: {c}/node.pem\n  tls_key_path: {c}/node-key.pem\n  tls_ca_path: {c}/ca.pem\nspool:\n  dir: spool\ngpu:\n  enabled: false\nobservability:\n  metrics_addr: 127.0.0.1:{mport}\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_telemetry-agent"))
        .arg(&cfg)
        .args(["--interval", "1", "--scrape", &target.url()])
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut text = String::new();
    for _ in 0..300 {
        text = std::fs::read_to_string(&log).unwrap();
        let scraped = match horizon_e2e::try_http(
            format!("127.0.0.1:{mport}").parse().unwrap(),
            "GET",
            "/metrics",
            "",
        )
        .await
        {
            Ok((200, body)) => Metrics::parse(&body).sum("horizon_agent_scrapes_total") >= 2.0,
            _ => false,
        };
        if scraped && text.contains("cannot reach the relay") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "agent exit status {status}; log:\n{text}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("cannot reach the relay"), "{text}");
    assert!(
        !text.contains("\x1b["),
        "colour codes in a log file: {text:?}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("lowered"))
        .unwrap_or_else(|| panic!("no line about the lowered timeout:\n{text}"));
    assert!(line.contains("WARN"), "{line}");
    for part in ["scrape.timeout_secs", "from 5 s", "to 1 s", "--interval 1"] {
        assert!(line.contains(part), "{line:?} lacks {part:?}");
    }
}
