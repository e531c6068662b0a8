//! docs/protocol.md against a default relay: the worked example of §10
//! answered as documented, and the close codes §1 gives for each handshake
//! refusal.

use super::*;

fn example_frame() -> Vec<u8> {
    let hex = include_str!("../../../docs/protocol-example.hex").trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

async fn ack_for(relay: &TestRelay, bytes: &[u8]) -> BatchAck {
    let conn = raw_connect(
        relay.addr,
        quic_client_config(&relay.node_tls("gpu-node-1")).unwrap(),
    )
    .await
    .unwrap();
    send_and_ack(&conn, bytes, true, Duration::from_secs(30))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_worked_example_is_answered_as_documented() {
    let relay = TestRelay::start("").await;
    // Verbatim: its points are from 2023, older than max_point_age_secs.
    let ack = ack_for(&relay, &example_frame()).await;
    assert_eq!((ack.sequence, ack.accepted, ack.rejected), (1, 0, 2));
    assert_eq!(reasons(&ack), [(RejectReason::Invalid, 2)]);
    assert!(
        ack.rejections[0]
            .message
            .contains("outside the accepted window"),
        "{:?}",
        ack.rejections[0].message
    );
    assert_eq!(ack.durability, Durability::Durable as i32);

    // With base_time_unix_nano set to now, as §10 says: both accepted, durable.
    let mut bytes = bytes::BytesMut::from(&example_frame()[..]);
    let mut frame: AgentFrame = codec::decode(&mut bytes, 1 << 20).unwrap().unwrap();
    let Some(agent_frame::Kind::Batch(b)) = frame.kind.as_mut() else {
        panic!("the example is a batch");
    };
    b.base_time_unix_nano = unix_nanos_now() - 1_000_000_000;
    let current = codec::encode_to_vec(&frame);
    assert_eq!(
        current.len(),
        example_frame().len(),
        "§10: a current timestamp is a varint of the same 9 bytes, the frame keeps its length"
    );
    let ack = ack_for(&relay, &current).await;
    assert_eq!((ack.sequence, ack.accepted, ack.rejected), (1, 2, 0));
    assert!(ack.rejections.is_empty());
    assert_eq!(ack.durability, Durability::Durable as i32);
    relay.stop().await;
}

/// Connects with `cfg` and returns how the connection ended.
async fn ending(relay: &TestRelay, cfg: quinn::ClientConfig) -> quinn::ConnectionError {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(cfg);
    let connecting = ep.connect(relay.addr, "localhost").unwrap();
    // The relay's default handshake timeout, plus a margin for the close.
    tokio::time::timeout(Duration::from_secs(10), async {
        match connecting.await {
            Err(e) => e,
            Ok(conn) => conn.closed().await,
        }
    })
    .await
    .expect("the relay ends the connection")
}

fn transport_code(e: &quinn::ConnectionError) -> Option<u64> {
    match e {
        quinn::ConnectionError::ConnectionClosed(c) => Some(u64::from(c.error_code)),
        _ => None,
    }
}

fn application_code(e: &quinn::ConnectionError) -> Option<u64> {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => Some(c.error_code.into_inner()),
        _ => None,
    }
}

fn rustls_client(
    alpn: &[u8],
    material: Option<&TlsMaterial>,
    ca: &TlsMaterial,
) -> quinn::ClientConfig {
    let ring = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca[0].clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(ring)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match material {
        Some(m) => builder
            .with_client_auth_cert(m.chain.clone(), m.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap(),
    ))
}

#[tokio::test]
async fn handshake_refusals_close_with_the_documented_codes() {
    let relay = TestRelay::start("").await;
    let good = relay.node_tls("gpu-node-1");
    // QUIC CRYPTO_ERROR carrying a TLS alert: 0x100 + the alert.
    let tls_alert = |alert: u64| Some(0x100 + alert);

    let none = ending(&relay, rustls_client(horizon_shared::ALPN, None, &good)).await;
    assert_eq!(
        transport_code(&none),
        tls_alert(116),
        "no certificate: certificate_required, {none}"
    );

    let alpn = ending(
        &relay,
        rustls_client(b"horizon-telemetry/2", Some(&good), &good),
    )
    .await;
    assert_eq!(
        transport_code(&alpn),
        tls_alert(120),
        "wrong ALPN: no_application_protocol, {alpn}"
    );

    let foreign = DevCa::generate("another CA")
        .unwrap()
        .issue_client("intruder")
        .unwrap();
    let m = TlsMaterial::from_pem(&foreign.cert_pem, &foreign.key_pem, relay.pki.ca.cert_pem())
        .unwrap();
    let e = ending(&relay, rustls_client(horizon_shared::ALPN, Some(&m), &good)).await;
    assert_eq!(
        transport_code(&e),
        tls_alert(48),
        "unknown CA: unknown_ca, {e}"
    );

    // A first DNS name over 253 bytes: no fallback to the URI SAN or CN.
    let long = relay
        .pki
        .ca
        .issue_client(&format!("{}.example", "n".repeat(250)))
        .unwrap();
    let m = TlsMaterial::from_pem(&long.cert_pem, &long.key_pem, relay.pki.ca.cert_pem()).unwrap();
    let e = ending(&relay, quic_client_config(&m).unwrap()).await;
    assert_eq!(
        application_code(&e),
        Some(error_code::PROTOCOL_VIOLATION.into()),
        "no usable name: {e}"
    );

    let metrics = relay.scrape().await;
    assert_eq!(
        metrics.get(r#"horizon_relay_connections_refused_total{reason="handshake"}"#),
        3.0
    );
    assert_eq!(
        metrics.get(r#"horizon_relay_connections_refused_total{reason="identity"}"#),
        1.0
    );
    relay.stop().await;
}
