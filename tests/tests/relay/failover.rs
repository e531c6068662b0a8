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
    assert_eq!(client.stats().connects, 2, "the client reconnected once");
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
