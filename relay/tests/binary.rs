//! The `telemetry-relay` binary and its signals: SIGTERM drains (every
//! batch it acked durably is in the store, and it exits 0); SIGHUP reloads
//! the budgets. Its logs go to stderr, without colour codes when stderr is
//! a file.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use horizon_shared::client::{Batch, Client, ClientConfig, Point};
use horizon_shared::devcerts::DevPki;
use horizon_shared::proto::Durability;
use horizon_shared::tls::TlsMaterial;

/// A relay process on a free loopback port, with its directory.
struct RelayProcess {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl RelayProcess {
    fn config(dir: &std::path::Path, port: u16, extra: &str) -> String {
        format!(
            "server:\n  listen_addr: \"127.0.0.1:{port}\"\nsecurity:\n  dev_certs_dir: \"{}\"\n\
             parquet:\n  output_dir: \"{}\"\n  rotation_interval_secs: 60\nobservability:\n  metrics_port: 0\n{extra}",
            dir.join("certs").display(),
            dir.join("objects").display()
        )
    }

    fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            dir.path().join("relay.yaml"),
            Self::config(dir.path(), port, extra),
        )
        .unwrap();
        let out = std::fs::File::create(dir.path().join("relay.out")).unwrap();
        let err = std::fs::File::create(dir.path().join("relay.err")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_telemetry-relay"))
            .arg(dir.path().join("relay.yaml"))
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Self { child, dir, port }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Connects as `node` once the relay is up (it creates its dev PKI first).
    async fn client(&self, node: &str) -> Client {
        let pki = DevPki::at(&self.dir.path().join("certs"));
        for _ in 0..100 {
            if pki.server_key.exists() {
                let (cert, key) = pki.client(node).unwrap();
                let tls = TlsMaterial::load(&cert, &key, &pki.ca_cert).unwrap();
                if let Ok(c) = Client::connect(ClientConfig::new(
                    format!("127.0.0.1:{}", self.port),
                    "localhost",
                    tls,
                ))
                .await
                {
                    return c;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("relay did not come up");
    }
}

impl RelayProcess {
    /// SIGTERM, then waits (up to 60 s) for the exit.
    async fn terminate(mut self) -> (Self, std::process::ExitStatus) {
        self.signal("-TERM");
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let status = loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    break status;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "relay did not exit within 60 s of SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            (self, status)
        })
        .await
        .unwrap()
    }

    /// What it wrote to stdout and to stderr.
    fn output(&self) -> (String, String) {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap();
        (read("relay.out"), read("relay.err"))
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_drains_and_everything_acked_durably_is_stored() {
    let relay = RelayProcess::start("");
    let client = relay.client("sigterm-node").await;
    let s = client.series("gpu_util", &[("gpu", "0")]).unwrap();
    let mut pending = Vec::new();
    for i in 0..300 {
        pending.push(
            client
                .send(Batch {
                    points: vec![Point::now(s, f64::from(i))],
                })
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Acks wait for a flush a minute away; SIGTERM must flush at once.
    let (relay, status) = relay.terminate().await;
    assert!(status.success(), "relay exit status {status}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut durable = Vec::new();
    for p in pending {
        if let Ok(Ok(a)) = tokio::time::timeout(Duration::from_millis(50), p).await
            && a.ack.durability == Durability::Durable as i32
            && a.ack.accepted == 1
        {
            durable.push(a.ack.sequence);
        }
    }
    assert_eq!(
        durable.len(),
        300,
        "every batch sent before SIGTERM was stored and acked"
    );

    let data = common::read_parquet_local(&relay.dir.path().join("objects"));
    assert_eq!(
        data["rows"].as_array().unwrap().len(),
        300,
        "stored once each"
    );
}

#[tokio::test]
async fn sighup_reloads_the_budgets() {
    let relay = RelayProcess::start("budgets:\n  max_series_per_node: 5\nack:\n  mode: received\n");
    let client = relay.client("reload-node").await;
    let series: Vec<_> = (0..10)
        .map(|i| {
            client
                .series("job_metric", &[("job", &i.to_string())])
                .unwrap()
        })
        .collect();
    let send = |t: i64| Batch {
        points: series.iter().map(|s| Point::new(*s, t, 1.0)).collect(),
    };
    let now = horizon_shared::clock::unix_nanos_now();
    let ack = client.send(send(now)).await.unwrap().await.unwrap().ack;
    assert_eq!(
        (ack.accepted, ack.rejected),
        (5, 5),
        "budget of 5 before the reload"
    );

    let cfg = RelayProcess::config(
        relay.dir.path(),
        relay.port,
        "budgets:\n  max_series_per_node: 20\nack:\n  mode: received\n",
    );
    std::fs::write(relay.dir.path().join("relay.yaml"), cfg).unwrap();
    relay.signal("-HUP");
    // The reload is asynchronous; within a few seconds the new budget applies.
    let mut accepted = 0;
    for i in 1..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        accepted = client
            .send(send(now + i))
            .await
            .unwrap()
            .await
            .unwrap()
            .ack
            .accepted;
        if accepted == 10 {
            break;
        }
    }
    assert_eq!(
        accepted, 10,
        "budget of 20 after SIGHUP admits all ten series"
    );
}

#[tokio::test]
async fn logs_go_to_stderr_without_colour_codes_when_it_is_a_file() {
    let relay = RelayProcess::start("");
    let client = relay.client("log-node").await;
    client.close().await;
    let (relay, status) = relay.terminate().await;
    assert!(status.success(), "relay exit status {status}");
    let (out, err) = relay.output();
    assert_eq!(out, "", "nothing on stdout");
    assert!(err.contains("INFO"), "the log is on stderr: {err}");
    assert!(
        !err.contains("\x1b["),
        "no colour codes in a log file: {err:?}"
    );
}
