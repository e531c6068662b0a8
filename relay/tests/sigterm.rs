//! The `telemetry-relay` binary, sent a real SIGTERM mid-stream, drains:
//! every batch it acked durably is in the store, and it exits 0.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use horizon_shared::client::{Batch, Client, ClientConfig, Point};
use horizon_shared::devcerts::DevPki;
use horizon_shared::proto::Durability;
use horizon_shared::tls::TlsMaterial;

#[tokio::test]
async fn sigterm_drains_and_everything_acked_durably_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let objects = dir.path().join("objects");
    let config = dir.path().join("relay.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen_addr: \"127.0.0.1:{port}\"\nsecurity:\n  dev_certs_dir: \"{}\"\n\
             parquet:\n  output_dir: \"{}\"\n  rotation_interval_secs: 60\nobservability:\n  metrics_port: 0\n",
            dir.path().join("certs").display(),
            objects.display()
        ),
    )
    .unwrap();
    let mut relay = Command::new(env!("CARGO_BIN_EXE_telemetry-relay"))
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The relay creates the development PKI; wait for it, then connect.
    let pki = DevPki::at(&dir.path().join("certs"));
    let mut client = None;
    for _ in 0..100 {
        if pki.server_key.exists() {
            let (cert, key) = pki.client("sigterm-node").unwrap();
            let tls = TlsMaterial::load(&cert, &key, &pki.ca_cert).unwrap();
            if let Ok(c) = Client::connect(ClientConfig::new(
                format!("127.0.0.1:{port}"),
                "localhost",
                tls,
            ))
            .await
            {
                client = Some(c);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = client.expect("relay came up");
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
    let kill = Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || relay.wait())
        .await
        .unwrap()
        .unwrap();
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

    let reader = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/py/read_parquet.py");
    let out = Command::new("python3")
        .arg(reader)
        .args(["local", objects.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow reader: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        data["rows"].as_array().unwrap().len(),
        300,
        "stored once each"
    );
}
