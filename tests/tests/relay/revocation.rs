//! Certificate revocation (`security.tls_crl_path`): CRLs made by the
//! openssl tool refuse revoked node certificates at the handshake, a reload
//! closes a revoked node's open connection, a broken CRL keeps the current
//! ones, and an expired CRL behaves as docs/protocol.md §1 says.

use std::path::Path;

use horizon_e2e::TestPki;
use horizon_e2e::crl::{NextUpdate, OpensslCa};
use horizon_shared::devcerts::Issued;

use super::*;

/// Idle timeout of these relays: a connection the relay did not close
/// would only end after it (keep-alives keep it open), so a close seen
/// before it, with the right code, is the relay's doing.
const IDLE_SECS: u64 = 5;

fn yaml(crl: &Path, enforce: bool) -> String {
    format!(
        "server:\n  connection_timeout_secs: {IDLE_SECS}\n  keep_alive_secs: 1\nsecurity:\n  tls_crl_path: [\"{}\"]\n  tls_crl_enforce_next_update: {enforce}\n",
        crl.display()
    )
}

fn material(pki: &TestPki, cert: &Issued) -> TlsMaterial {
    TlsMaterial::from_pem(&cert.cert_pem, &cert.key_pem, pki.ca.cert_pem()).unwrap()
}

/// TLS alert certificate_revoked as a QUIC transport error code.
fn revoked_alert() -> quinn::TransportErrorCode {
    quinn::TransportErrorCode::crypto(44)
}

/// Connects with `tls` and returns how the connection ended, waiting at
/// most the handshake timeout plus the idle timeout.
async fn ending(relay: &TestRelay, tls: &TlsMaterial) -> quinn::ConnectionError {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quic_client_config(tls).unwrap());
    let connecting = ep.connect(relay.addr, "localhost").unwrap();
    let bound = Duration::from_secs(5 + IDLE_SECS);
    tokio::time::timeout(bound, async {
        match connecting.await {
            Err(e) => e,
            Ok(conn) => conn.closed().await,
        }
    })
    .await
    .expect("the connection ends within the handshake and idle timeouts")
}

fn is_revoked_refusal(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ConnectionClosed(c) if c.error_code == revoked_alert())
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_at_the_handshake_and_its_neighbours_are_not() {
    let pki = TestPki::new();
    let good = pki.ca.issue_client("node-good").unwrap();
    let bad = pki.ca.issue_client("node-bad").unwrap();
    let mut ca = OpensslCa::new(&pki.paths.ca_cert, &pki.paths.ca_key);
    ca.revoke(&bad.cert_pem);
    let crl_dir = tempfile::tempdir().unwrap();
    // DER here; the other tests use PEM.
    let crl = crl_dir.path().join("nodes.crl");
    ca.write_crl(&crl, NextUpdate::InADay, true);
    let relay = TestRelay::start_at(pki.clone(), &yaml(&crl, false), None).await;

    let e = ending(&relay, &material(&pki, &bad)).await;
    assert!(is_revoked_refusal(&e), "revoked node refused: {e}");
    let ack = exchange(
        relay.addr,
        quic_client_config(&material(&pki, &good)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(ack.accepted, 1, "a neighbour from the same CA is served");

    let m = relay.scrape().await;
    assert_eq!(
        m.get(r#"horizon_relay_connections_refused_total{reason="revoked"}"#),
        1.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_connections_refused_total{reason="handshake"}"#),
        0.0
    );
    assert_eq!(m.get("horizon_relay_connections_accepted_total"), 1.0);
    assert_eq!(m.get("horizon_relay_tls_crls"), 1.0);
    relay.stop().await;
}

#[tokio::test]
async fn a_reload_closes_the_open_connection_of_a_node_just_revoked() {
    let pki = TestPki::new();
    let good = pki.ca.issue_client("node-good").unwrap();
    let bad = pki.ca.issue_client("node-bad").unwrap();
    let mut ca = OpensslCa::new(&pki.paths.ca_cert, &pki.paths.ca_key);
    let crl_dir = tempfile::tempdir().unwrap();
    let crl = crl_dir.path().join("nodes.crl.pem");
    // A CRL that revokes nothing yet.
    ca.write_crl(&crl, NextUpdate::InADay, false);
    let relay = TestRelay::start_at(pki.clone(), &yaml(&crl, false), None).await;

    // Both nodes connected and streaming.
    let good_conn = raw_connect(
        relay.addr,
        quic_client_config(&material(&pki, &good)).unwrap(),
    )
    .await
    .unwrap();
    let bad_conn = raw_connect(
        relay.addr,
        quic_client_config(&material(&pki, &bad)).unwrap(),
    )
    .await
    .unwrap();
    for conn in [&good_conn, &bad_conn] {
        assert_eq!(ack_on(conn, 1).await.accepted, 1);
    }

    ca.revoke(&bad.cert_pem);
    ca.write_crl(&crl, NextUpdate::InADay, false);
    let reloaded = relay.tls.reload().expect("reload");
    assert_eq!(reloaded.revoked_closed, 1);
    assert_eq!(reloaded.crls, 1);

    let bound = Duration::from_secs(IDLE_SECS);
    let why = tokio::time::timeout(bound, bad_conn.closed())
        .await
        .expect("the revoked node's connection is closed before the idle timeout");
    match why {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, error_code::CERTIFICATE_REVOKED.into());
        }
        other => panic!("closed with {other}, not CERTIFICATE_REVOKED"),
    }
    // The neighbour keeps streaming on its connection.
    assert_eq!(ack_on(&good_conn, 2).await.accepted, 1);
    // And the revoked node cannot come back.
    let e = ending(&relay, &material(&pki, &bad)).await;
    assert!(is_revoked_refusal(&e), "revoked node refused: {e}");

    let m = relay.scrape().await;
    assert_eq!(m.get("horizon_relay_revoked_connections_closed_total"), 1.0);
    assert_eq!(
        m.get(r#"horizon_relay_tls_reloads_total{result="ok"}"#),
        1.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_connections_refused_total{reason="revoked"}"#),
        1.0
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_broken_crl_file_keeps_the_current_crls() {
    let pki = TestPki::new();
    let bad = pki.ca.issue_client("node-bad").unwrap();
    let mut ca = OpensslCa::new(&pki.paths.ca_cert, &pki.paths.ca_key);
    ca.revoke(&bad.cert_pem);
    let crl_dir = tempfile::tempdir().unwrap();
    let crl = crl_dir.path().join("nodes.crl.pem");
    ca.write_crl(&crl, NextUpdate::InADay, false);
    let relay = TestRelay::start_at(pki.clone(), &yaml(&crl, false), None).await;

    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nnot base64 at all\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let err = relay.tls.reload().expect_err("a broken CRL is refused");
    assert!(
        err.to_string().contains("nodes.crl.pem"),
        "names the file: {err}"
    );
    // A CRL from another CA is refused too.
    let other = tempfile::tempdir().unwrap();
    let other_pki = horizon_shared::devcerts::DevPki::ensure(other.path())
        .unwrap()
        .0;
    OpensslCa::new(&other_pki.ca_cert, &other_pki.ca_key).write_crl(
        &crl,
        NextUpdate::InADay,
        false,
    );
    let err = relay.tls.reload().expect_err("a foreign CRL is refused");
    assert!(
        err.to_string().contains("not issued by the client CA"),
        "{err}"
    );

    // The CRL loaded at start still applies.
    let e = ending(&relay, &material(&pki, &bad)).await;
    assert!(is_revoked_refusal(&e), "still refused: {e}");
    let m = relay.scrape().await;
    assert_eq!(
        m.get(r#"horizon_relay_tls_reloads_total{result="error"}"#),
        2.0
    );
    assert_eq!(m.get("horizon_relay_tls_crls"), 1.0);
    relay.stop().await;
}

#[tokio::test]
async fn an_expired_crl_keeps_applying_unless_next_update_is_enforced() {
    let pki = TestPki::new();
    let good = pki.ca.issue_client("node-good").unwrap();
    let bad = pki.ca.issue_client("node-bad").unwrap();
    let mut ca = OpensslCa::new(&pki.paths.ca_cert, &pki.paths.ca_key);
    ca.revoke(&bad.cert_pem);
    let crl_dir = tempfile::tempdir().unwrap();
    let crl = crl_dir.path().join("nodes.crl.pem");
    ca.write_crl(&crl, NextUpdate::Yesterday, false);

    // Default: what it revokes stays revoked, the others are served, and
    // the gauge shows a nextUpdate in the past.
    let relay = TestRelay::start_at(pki.clone(), &yaml(&crl, false), None).await;
    let e = ending(&relay, &material(&pki, &bad)).await;
    assert!(is_revoked_refusal(&e), "revoked node refused: {e}");
    let ack = exchange(
        relay.addr,
        quic_client_config(&material(&pki, &good)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(ack.accepted, 1);
    let m = relay.scrape().await;
    let next = m.get("horizon_relay_tls_crl_next_update_timestamp_seconds");
    assert!(
        next > 0.0 && next < (unix_nanos_now() / 1_000_000_000) as f64,
        "{next}"
    );
    relay.stop().await;

    // Enforced: every certificate the CRL covers is refused.
    let relay = TestRelay::start_at(pki.clone(), &yaml(&crl, true), None).await;
    assert!(
        exchange(
            relay.addr,
            quic_client_config(&material(&pki, &good)).unwrap()
        )
        .await
        .is_err(),
        "an expired, enforced CRL refuses everyone it covers"
    );
    let m = relay.scrape().await;
    assert_eq!(m.get("horizon_relay_connections_accepted_total"), 0.0);
    relay.stop().await;
}

#[tokio::test]
async fn sighup_to_the_relay_binary_applies_a_new_crl_path_and_cuts_the_revoked_node() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let (pki, _) = horizon_shared::devcerts::DevPki::ensure(&certs).unwrap();
    let ca = pki.ca().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let crl = dir.path().join("nodes.crl.pem");
    let config = |security_extra: &str| {
        format!(
            "server:\n  listen_addr: \"127.0.0.1:{port}\"\n  connection_timeout_secs: {IDLE_SECS}\n  keep_alive_secs: 1\n\
             security:\n  dev_certs_dir: \"{}\"\n{security_extra}\
             parquet:\n  output_dir: \"{}\"\nack:\n  mode: received\nobservability:\n  metrics_port: 0\n",
            certs.display(),
            dir.path().join("objects").display()
        )
    };
    let yaml = dir.path().join("relay.yaml");
    // No CRL configured at start.
    std::fs::write(&yaml, config("")).unwrap();
    let mut child =
        std::process::Command::new(horizon_e2e::bins::workspace_binary("telemetry-relay"))
            .arg(&yaml)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tls = |node: &str| {
        let issued = ca.issue_client(node).unwrap();
        (
            issued.clone(),
            TlsMaterial::from_pem(&issued.cert_pem, &issued.key_pem, ca.cert_pem()).unwrap(),
        )
    };
    let (_, good_tls) = tls("node-good");
    let (bad_cert, bad_tls) = tls("node-bad");
    let mut good = None;
    for _ in 0..100 {
        if let Ok(c) = raw_connect(addr, quic_client_config(&good_tls).unwrap()).await {
            good = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let good = good.expect("the relay binary comes up");
    let bad = raw_connect(addr, quic_client_config(&bad_tls).unwrap())
        .await
        .unwrap();
    assert_eq!(ack_on(&bad, 1).await.accepted, 1);

    // Revoke with openssl, add tls_crl_path to the file, SIGHUP.
    let mut openssl_ca = OpensslCa::new(&pki.ca_cert, &pki.ca_key);
    openssl_ca.revoke(&bad_cert.cert_pem);
    openssl_ca.write_crl(&crl, NextUpdate::InADay, false);
    std::fs::write(
        &yaml,
        config(&format!("  tls_crl_path: \"{}\"\n", crl.display())),
    )
    .unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());

    let why = tokio::time::timeout(Duration::from_secs(IDLE_SECS), bad.closed())
        .await
        .expect("the revoked node's connection is closed before the idle timeout");
    let good_ack = ack_on(&good, 2).await;
    let _ = child.kill();
    let _ = child.wait();
    match why {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, error_code::CERTIFICATE_REVOKED.into());
        }
        other => panic!("closed with {other}, not CERTIFICATE_REVOKED"),
    }
    assert_eq!(good_ack.accepted, 1, "the neighbour keeps streaming");
}
