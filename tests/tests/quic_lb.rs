//! QUIC passthrough: relays with `server.quic_lb_server_id` write their
//! server ID into every connection ID they issue, and a balancer that routes
//! by it (as an AWS network load balancer's QUIC listener does) keeps an
//! agent on its relay when the agent's address changes. The same address
//! change behind a balancer that hashes the address and port (nginx, like
//! the NLB's UDP listener) can send the agent to another relay, which
//! makes it reconnect and resend.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use horizon_e2e::quiclb::CidBalancer;
use horizon_e2e::udp_lb::Nginx;
use horizon_e2e::{TestPki, TestRelay, send_values};
use horizon_shared::client::{Acked, Client, ClientConfig, SeriesId};

const IDS: [[u8; 8]; 2] = [
    [0x0a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x01],
    [0x0a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x02],
];

fn hex(id: &[u8; 8]) -> String {
    let digits: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("0x{digits}")
}

/// Two relays with server IDs, sharing one PKI.
async fn two_relays() -> (TestRelay, TestRelay) {
    let pki = TestPki::new();
    let a = TestRelay::start_at(
        pki.clone(),
        &format!("server:\n  quic_lb_server_id: \"{}\"\n", hex(&IDS[0])),
        None,
    )
    .await;
    let b = TestRelay::start_at(
        pki,
        &format!("server:\n  quic_lb_server_id: \"{}\"\n", hex(&IDS[1])),
        None,
    )
    .await;
    (a, b)
}

async fn accepted_connections(relays: [&TestRelay; 2]) -> [f64; 2] {
    let mut out = [0.0; 2];
    for (i, r) in relays.iter().enumerate() {
        out[i] = r
            .scrape()
            .await
            .get("horizon_relay_connections_accepted_total");
    }
    out
}

/// Sends one-point batches and waits for their acks; a wait of a minute
/// (packets going nowhere) fails the test instead of hanging it.
async fn send(client: &Client, series: SeriesId, values: std::ops::Range<i32>) -> Vec<Acked> {
    tokio::time::timeout(Duration::from_secs(60), send_values(client, series, values))
        .await
        .expect("acks within a minute")
}

fn client_config(relay: &TestRelay, addr: std::net::SocketAddr) -> ClientConfig {
    let mut c = relay.client_config("rebinding-node");
    c.addr = addr.to_string();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_keeps_its_connection_and_relay_across_rebinds_behind_a_cid_balancer() {
    let (a, b) = two_relays().await;
    let lb = CidBalancer::start(vec![(IDS[0], a.addr), (IDS[1], b.addr)]).await;
    let client = Client::connect(client_config(&a, lb.addr)).await.unwrap();
    let series = client.series("gpu_power_watts", &[("gpu", "0")]).unwrap();
    let first = send(&client, series, 0..20).await;
    assert!(first.iter().all(|a| a.ack.accepted == 1));
    let serving = accepted_connections([&a, &b]).await;
    assert_eq!(serving.iter().sum::<f64>(), 1.0, "{serving:?}");
    let routed_by_id = lb.counts.by_server_id.load(Ordering::Relaxed);
    assert!(
        routed_by_id > 0,
        "the handshake's later packets carry the server ID"
    );

    let mut ports = vec![];
    for round in 0..5 {
        let new = client.rebind().unwrap();
        ports.push(new.port());
        let acks = send(&client, series, 100 * (round + 1)..100 * (round + 1) + 20).await;
        assert!(acks.iter().all(|a| a.ack.accepted == 1 && a.attempts == 1));
    }
    ports.dedup();
    assert_eq!(
        ports.len(),
        5,
        "each rebind took a new local port: {ports:?}"
    );
    assert_eq!(
        lb.counts.upstreams.load(Ordering::Relaxed),
        6,
        "the relay saw the agent from six addresses"
    );
    let stats = client.stats();
    assert_eq!(
        (stats.connects, stats.connection_errors, stats.resends),
        (1, 0, 0),
        "no reconnect, no resend"
    );
    assert_eq!(
        accepted_connections([&a, &b]).await,
        serving,
        "no new connection on either relay"
    );
    assert_eq!(lb.counts.dropped.load(Ordering::Relaxed), 0);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_rebinds_behind_a_5_tuple_balancer_make_the_agent_reconnect() {
    let (a, b) = two_relays().await;
    let nginx = Nginx::start(&[a.addr, b.addr]);
    let mut config = client_config(&a, nginx.addr);
    // Notice the lost connection quickly: the old relay answers the agent's
    // packets on the new path with a stateless reset.
    config.ack_timeout = Duration::from_secs(10);
    let client = Client::connect(config).await.unwrap();
    let series = client.series("gpu_power_watts", &[("gpu", "0")]).unwrap();
    let mut expected = 0;
    send(&client, series, 0..5).await;
    expected += 5;
    // Each new source port is a new flow that nginx hashes afresh: with two
    // relays, one of a few rebinds lands on the other one.
    let mut rebinds = 0;
    while client.stats().connects == 1 {
        assert!(
            rebinds < 40,
            "40 rebinds and no reconnect: {:?}",
            client.stats()
        );
        client.rebind().unwrap();
        rebinds += 1;
        let from = 1000 * rebinds;
        let acks = send(&client, series, from..from + 5).await;
        expected += 5;
        assert!(acks.iter().all(|a| a.ack.accepted == 1), "resent and acked");
    }
    let stats = client.stats();
    assert!(stats.connects >= 2, "{stats:?}");
    let accepted = accepted_connections([&a, &b]).await;
    assert!(
        accepted.iter().sum::<f64>() >= 2.0,
        "a second connection was accepted: {accepted:?}"
    );
    // Nothing acked was lost: every point is in one relay's objects or the other's.
    client.close().await;
    let mut written = 0.0;
    for r in [&a, &b] {
        written += r.scrape().await.get("horizon_relay_points_written_total");
    }
    assert!(
        written >= f64::from(expected),
        "{written} points written, {expected} sent and acked durably"
    );
}
