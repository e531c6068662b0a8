//! How the client tells a dead relay from a slow one: a relay that goes
//! silent is left after `liveness_timeout`, from a fresh UDP port; one that
//! is alive but slow to ack (durable acks wait for the flush) is kept.

use std::time::Instant;

use horizon_e2e::flow_gate::FlowGate;

use super::*;

const LIVENESS: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_silent_relay_is_left_within_the_liveness_timeout_from_a_fresh_port() {
    let relay = TestRelay::start("").await;
    let gate = FlowGate::start(relay.addr).await;
    let mut cfg = relay.client_config("failover-node");
    cfg.addr = gate.addr.to_string();
    cfg.liveness_timeout = LIVENESS;
    cfg.connect_timeout = Duration::from_secs(2);
    let client = Client::connect(cfg).await.unwrap();
    let series = client.series("gpu_util", &[("gpu", "0")]).unwrap();
    assert_eq!(send_values(&client, series, 0..3).await.len(), 3);

    // The path goes silent both ways, as through a balancer whose relay
    // died: no answer, no error. Only the client's own check can tell.
    gate.silence_existing();
    let sent = Instant::now();
    let acks = send_values(&client, series, 3..4).await;
    let took = sent.elapsed();
    assert_eq!(acks[0].ack.accepted, 1);
    assert_eq!(acks[0].ack.durability, Durability::Durable as i32);
    let stats = client.stats();
    assert_eq!(stats.connects, 2, "the client reconnected once");
    assert_eq!(
        (stats.connections_lost, stats.silences, stats.unconfirmed),
        (1, 1, 0),
        "one established connection lost, to a silent relay: {stats:?}"
    );
    let flows = gate.flows();
    assert_eq!(flows.len(), 2, "{flows:?}");
    assert_ne!(
        flows[0].port(),
        flows[1].port(),
        "the reconnect comes from a fresh port, so a 5-tuple balancer picks anew"
    );
    // The silence, a quarter second between checks, the pause before the
    // reconnect (under 250 ms), the relay's 200 ms flush, and 1.5 s for the
    // handshake, the resend and a loaded machine. Without the check the
    // batch would wait for the 60 s idle or the 30 s ack timeout.
    let bound = LIVENESS + Duration::from_millis(250 + 250 + 200 + 1500);
    assert!(took <= bound, "acked after {took:?}, over {bound:?}");
    client.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_connection_the_relay_never_confirmed_is_a_failed_attempt_not_a_lost_one() {
    let relay = TestRelay::start("server:\n  handshake_timeout_secs: 1\n").await;
    let gate = FlowGate::start(relay.addr).await;
    // The relay's first flight reaches the client, which completes its
    // side of the handshake; the client's last flight never reaches the
    // relay, which times its side out.
    gate.hold_back_clients_after_answer(true);
    let mut cfg = relay.client_config("unconfirmed-node");
    cfg.addr = gate.addr.to_string();
    cfg.liveness_timeout = LIVENESS;
    cfg.connect_timeout = Duration::from_secs(2);
    let client = Client::connect(cfg).await.unwrap();
    let began = Instant::now();
    while client.stats().unconfirmed == 0 {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "no unconfirmed connection counted: {:?}",
            client.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = relay.scrape().await;
    assert!(
        m.get("horizon_relay_handshakes_timed_out_total") >= 1.0,
        "the relay's side of the handshake never finished"
    );
    assert_eq!(m.get("horizon_relay_connections_accepted_total"), 0.0);

    // The path heals: the client connects, and its batch is acked.
    gate.hold_back_clients_after_answer(false);
    let series = client.series("gpu_util", &[("gpu", "0")]).unwrap();
    assert_eq!(send_values(&client, series, 0..1).await[0].ack.accepted, 1);
    let stats = client.stats();
    assert_eq!(
        (stats.connections_lost, stats.silences),
        (0, 0),
        "no established connection was lost: {stats:?}"
    );
    assert!(
        stats.unconfirmed >= 1 && stats.connection_errors >= stats.unconfirmed,
        "{stats:?}"
    );
    client.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_client_that_gives_up_on_its_handshake_is_counted_as_abandoned_not_refused() {
    let relay = TestRelay::start("").await;
    let gate = FlowGate::start(relay.addr).await;
    // The relay hears the client's Initial; the client never hears the
    // relay, gives up at its connect timeout and closes.
    gate.drop_relay_answers(true);
    let mut cfg = relay.client_config("impatient-node");
    cfg.addr = gate.addr.to_string();
    cfg.connect_timeout = Duration::from_millis(500);
    assert!(
        Client::connect(cfg).await.is_err(),
        "the relay was never heard"
    );
    let abandoned = "horizon_relay_handshakes_abandoned_total";
    let m = scrape_until(&relay, |m| m.get(abandoned) >= 1.0).await;
    assert_eq!(m.get(abandoned), 1.0, "one abandoned handshake counted");
    assert_eq!(
        m.get(r#"horizon_relay_connections_refused_total{reason="handshake"}"#),
        0.0,
        "a client that gave up is not a TLS failure"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_slow_to_ack_is_not_taken_for_gone() {
    // Durable acks come after the 3 s flush age: three times the liveness
    // timeout. The relay's QUIC stack answers the client's pings meanwhile.
    let relay = TestRelay::start("parquet:\n  rotation_interval_secs: 3\n").await;
    let mut cfg = relay.client_config("slow-relay-node");
    cfg.liveness_timeout = LIVENESS;
    let client = Client::connect(cfg).await.unwrap();
    let series = client.series("gpu_util", &[("gpu", "0")]).unwrap();
    let acks = send_values(&client, series, 0..2).await;
    assert!(
        acks.iter().all(|a| a.latency > LIVENESS * 2),
        "each ack waited for the flush: {:?}",
        acks.iter().map(|a| a.latency).collect::<Vec<_>>()
    );
    assert!(acks.iter().all(|a| a.attempts == 1));
    assert_eq!(client.stats().connects, 1, "never reconnected");
    assert_eq!(client.stats().connection_errors, 0);
    client.close().await;
    relay.stop().await;
}
