//! Mutual TLS: refused handshakes, identity from the certificate, reload, the dev-certificate script.

use super::*;

#[tokio::test]
async fn handshake_is_refused_without_a_valid_client_certificate() {
    let relay = TestRelay::start("").await;
    let good = relay.node_tls("good-node");
    let ring = Arc::new(rustls::crypto::ring::default_provider());
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        r.add(good.ca[0].clone()).unwrap();
        r
    };

    // No client certificate at all.
    let mut no_cert = rustls::ClientConfig::builder_with_provider(ring)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    no_cert.alpn_protocols = vec![horizon_shared::ALPN.to_vec()];
    let no_cert = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(no_cert).unwrap(),
    ));
    assert!(
        exchange(relay.addr, no_cert).await.is_err(),
        "no client certificate must be refused"
    );

    // A certificate from another CA (the relay's CA still trusted for the server).
    let other = DevCa::generate("some other CA")
        .unwrap()
        .issue_client("intruder")
        .unwrap();
    let mut m =
        TlsMaterial::from_pem(&other.cert_pem, &other.key_pem, relay.pki.ca.cert_pem()).unwrap();
    m.ca = good.ca.clone();
    assert!(
        exchange(relay.addr, quic_client_config(&m).unwrap())
            .await
            .is_err(),
        "foreign CA must be refused"
    );

    // An expired certificate from the right CA.
    let expired = relay
        .pki
        .ca
        .issue_client_valid(
            "expired-node",
            time::Duration::days(-10),
            time::Duration::days(-1),
        )
        .unwrap();
    let m = TlsMaterial::from_pem(&expired.cert_pem, &expired.key_pem, relay.pki.ca.cert_pem())
        .unwrap();
    assert!(
        exchange(relay.addr, quic_client_config(&m).unwrap())
            .await
            .is_err(),
        "expired certificate must be refused"
    );

    // The good one works, and nothing from the refused ones was read.
    let ack = exchange(relay.addr, quic_client_config(&good).unwrap())
        .await
        .unwrap();
    assert_eq!(ack.accepted, 1);
    let metrics = relay.scrape().await;
    assert_eq!(
        metrics.get(r#"horizon_relay_connections_refused_total{reason="handshake"}"#),
        3.0
    );
    assert_eq!(metrics.get("horizon_relay_points_received_total"), 1.0);
    assert_eq!(metrics.get("horizon_relay_connections_accepted_total"), 1.0);
    relay.stop().await;
}

#[tokio::test]
async fn identity_comes_from_the_certificate_whatever_the_batch_says() {
    let relay = TestRelay::start("").await;
    let client = relay.client("node-a.example").await;
    let honest = client.series("gpu_power_watts", &[("gpu", "0")]).unwrap();
    let forged = client.series_unchecked(
        "gpu_power_watts",
        &[("gpu", "0"), ("node", "node-b.example")],
    );
    let t = unix_nanos_now();
    let ack = client
        .send(Batch {
            points: vec![Point::new(honest, t, 300.0), Point::new(forged, t, 300.0)],
        })
        .await
        .unwrap()
        .await
        .unwrap()
        .ack;
    assert_eq!((ack.accepted, ack.rejected), (1, 1));
    assert_eq!(reasons(&ack), vec![(RejectReason::Invalid, 1)]);
    assert!(
        ack.rejections[0].message.contains("reserved"),
        "{}",
        ack.rejections[0].message
    );
    let nodes: Vec<String> = relay
        .budgets
        .top_nodes(10)
        .iter()
        .map(|u| u.node.to_string())
        .collect();
    assert_eq!(nodes, vec!["node-a.example".to_owned()]);

    // A certificate with only a subject CN identifies the node by its CN.
    let cn = relay.pki.ca.issue_client_cn_only("cn-only-node").unwrap();
    let tls = TlsMaterial::from_pem(&cn.cert_pem, &cn.key_pem, relay.pki.ca.cert_pem()).unwrap();
    assert_eq!(
        exchange(relay.addr, quic_client_config(&tls).unwrap())
            .await
            .unwrap()
            .accepted,
        1
    );
    assert!(
        relay
            .budgets
            .top_nodes(10)
            .iter()
            .any(|u| &*u.node == "cn-only-node")
    );
    client.close().await;
    relay.stop().await;
}

/// The leaf certificate the relay serves to a new connection from `node`.
async fn served_certificate(
    relay: &TestRelay,
    node: &str,
) -> rustls::pki_types::CertificateDer<'static> {
    let conn = raw_connect(
        relay.addr,
        quic_client_config(&relay.node_tls(node)).unwrap(),
    )
    .await
    .unwrap();
    let chain = conn
        .peer_identity()
        .unwrap()
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .unwrap();
    chain[0].clone()
}

#[tokio::test]
async fn certificate_reload_applies_to_new_connections_and_keeps_open_ones() {
    let relay = TestRelay::start("").await;
    let old = relay.client("long-lived").await;
    let s = old.series("gpu_util", &[]).unwrap();
    assert_eq!(
        old.send(Batch {
            points: vec![Point::now(s, 1.0)]
        })
        .await
        .unwrap()
        .await
        .unwrap()
        .ack
        .accepted,
        1
    );

    // Rotate the relay's certificate on disk and reload.
    let fresh = relay
        .pki
        .ca
        .issue_server(&["localhost", "127.0.0.1"])
        .unwrap();
    std::fs::write(&relay.pki.paths.server_cert, &fresh.cert_pem).unwrap();
    std::fs::write(&relay.pki.paths.server_key, &fresh.key_pem).unwrap();
    relay.tls.reload().unwrap();

    // A new connection is served with the new certificate.
    let served = served_certificate(&relay, "newcomer").await;
    let fresh_der = TlsMaterial::from_pem(&fresh.cert_pem, &fresh.key_pem, relay.pki.ca.cert_pem())
        .unwrap()
        .chain[0]
        .clone();
    assert_eq!(served, fresh_der, "new connections see the new certificate");

    // The open connection was not dropped and keeps working.
    assert_eq!(
        old.send(Batch {
            points: vec![Point::now(s, 2.0)]
        })
        .await
        .unwrap()
        .await
        .unwrap()
        .ack
        .accepted,
        1
    );
    assert_eq!(old.stats().connects, 1, "no reconnect");

    // A broken file is refused and the current certificate stays.
    std::fs::write(&relay.pki.paths.server_cert, "not a certificate").unwrap();
    assert!(relay.tls.reload().is_err());
    let served_again = served_certificate(&relay, "third").await;
    assert_eq!(served_again, fresh_der);
    old.close().await;
    relay.stop().await;
}

/// `infra/dev/dev-certs.sh` (openssl) makes a PKI the relay serves with and a
/// node certificate an agent is accepted with, under the node's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_certificate_script_makes_a_working_pki() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/dev/dev-certs.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(dir.path())
        .arg("gpu-node-7")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let certs = dir.path().to_owned();
    let pki = horizon_e2e::TestPki::from_dir(dir);
    let relay = TestRelay::start_at(pki, "", None).await;
    let tls = TlsMaterial::load(
        &certs.join("client-gpu-node-7.pem"),
        &certs.join("client-gpu-node-7-key.pem"),
        &certs.join("ca.pem"),
    )
    .unwrap();
    let cfg = horizon_shared::client::ClientConfig::new(relay.addr.to_string(), "localhost", tls);
    let c = Client::connect(cfg).await.unwrap();
    let s = c.series("gpu_temp_celsius", &[("gpu", "0")]).unwrap();
    let ack = c
        .send(Batch {
            points: vec![Point::new(s, unix_nanos_now(), 41.0)],
        })
        .await
        .unwrap()
        .await
        .unwrap()
        .ack;
    assert_eq!(ack.accepted, 1);
    let m = relay.scrape().await;
    assert_eq!(
        m.get("horizon_relay_budget_node_series{node=\"gpu-node-7\"}"),
        1.0
    );
}
