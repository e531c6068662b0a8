//! Limits: cardinality budgets, connection caps (relay-wide and per node),
//! in-flight caps, keep-alives.

use super::*;

#[tokio::test]
async fn over_budget_node_is_refused_the_excess_and_ack_matches_metrics() {
    let relay = TestRelay::start("budgets:\n  max_series_per_node: 50\n").await;
    let a = relay.client("sprayer").await;
    let b = relay.client("well-behaved").await;
    let sa: Vec<_> = (0..80)
        .map(|i| {
            a.series("job_metric", &[("job_id", &i.to_string())])
                .unwrap()
        })
        .collect();
    let sb: Vec<_> = (0..50)
        .map(|i| b.series("gpu_util", &[("gpu", &i.to_string())]).unwrap())
        .collect();
    let t = unix_nanos_now();
    let ack_a = a
        .send(Batch {
            points: sa.iter().map(|s| Point::new(*s, t, 1.0)).collect(),
        })
        .await
        .unwrap()
        .await
        .unwrap()
        .ack;
    let ack_b = b
        .send(Batch {
            points: sb.iter().map(|s| Point::new(*s, t, 1.0)).collect(),
        })
        .await
        .unwrap()
        .await
        .unwrap()
        .ack;
    assert_eq!((ack_a.accepted, ack_a.rejected), (50, 30));
    assert_eq!(reasons(&ack_a), vec![(RejectReason::Cardinality, 30)]);
    assert_eq!((ack_b.accepted, ack_b.rejected), (50, 0));
    // Admitted series keep flowing; the refused ones stay refused.
    let ack_a2 = a
        .send(Batch {
            points: sa.iter().map(|s| Point::new(*s, t + 1, 2.0)).collect(),
        })
        .await
        .unwrap()
        .await
        .unwrap()
        .ack;
    assert_eq!((ack_a2.accepted, ack_a2.rejected), (50, 30));

    let m = relay.scrape().await;
    assert_eq!(
        m.get(r#"horizon_relay_points_rejected_total{reason="cardinality"}"#),
        60.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_budget_rejected_points_total{limit="node"}"#),
        60.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_budget_node_rejected_points_total{node="sprayer"}"#),
        60.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_budget_node_rejected_points_total{node="well-behaved"}"#),
        0.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_budget_node_series{node="sprayer"}"#),
        50.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_budget_node_series_limit{node="sprayer"}"#),
        50.0
    );
    assert_eq!(m.get("horizon_relay_budget_series"), 100.0);
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_before_the_handshake() {
    let relay = TestRelay::start("server:\n  max_connections: 1\n").await;
    let first = relay.client("first").await;
    let second = Client::connect(relay.client_config("second")).await;
    assert!(second.is_err(), "second connection must be refused");
    let m = relay.scrape().await;
    assert_eq!(
        m.get(r#"horizon_relay_connections_refused_total{reason="limit"}"#),
        1.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_connections_refused_total{reason="handshake"}"#),
        0.0
    );
    first.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn connections_past_the_per_node_cap_replace_the_oldest_and_others_still_connect() {
    const REPLACED: &str = r#"horizon_relay_connections_replaced_total{reason="per_node_cap"}"#;
    let relay =
        TestRelay::start("server:\n  max_connections: 4\n  max_connections_per_node: 2\n").await;
    let cfg = || quic_client_config(&relay.node_tls("leaky-node")).unwrap();
    // One certificate opens 6 connections, more than max_connections: each
    // is accepted and served, and replaces the oldest beyond the first two.
    let mut conns = Vec::new();
    for i in 0..6u64 {
        let conn = raw_connect(relay.addr, cfg())
            .await
            .unwrap_or_else(|e| panic!("connection {i} of the node: {e}"));
        let ack = ack_on(&conn, i).await;
        assert_eq!((ack.sequence, ack.accepted), (i, 1), "connection {i}");
        conns.push(conn);
    }
    // The four oldest were closed with CONNECTION_REPLACED, oldest first.
    for (i, old) in conns[..4].iter().enumerate() {
        let closed = tokio::time::timeout(Duration::from_secs(5), old.closed())
            .await
            .unwrap_or_else(|_| panic!("connection {i} is closed"));
        match closed {
            quinn::ConnectionError::ApplicationClosed(c) => assert_eq!(
                c.error_code,
                error_code::CONNECTION_REPLACED.into(),
                "connection {i}"
            ),
            other => panic!("connection {i} ended with {other}"),
        }
    }
    // The two newest still work.
    for (i, conn) in conns[4..].iter().enumerate() {
        assert!(conn.close_reason().is_none());
        assert_eq!(ack_on(conn, 10 + i as u64).await.accepted, 1);
    }
    // Another node connects at once: the leaky one holds 2 of the 4 slots.
    let other = raw_connect(
        relay.addr,
        quic_client_config(&relay.node_tls("other")).unwrap(),
    )
    .await
    .expect("another node connects");
    assert_eq!(ack_on(&other, 1).await.accepted, 1);

    let m = relay.scrape().await;
    assert_eq!(m.get(REPLACED), 4.0);
    assert_eq!(
        m.get(r#"horizon_relay_connections_refused_total{reason="limit"}"#),
        0.0
    );
    assert_eq!(m.get("horizon_relay_connections_accepted_total"), 7.0);
    assert_eq!(
        m.get(r#"horizon_relay_limit{limit="connections_per_node"}"#),
        2.0
    );
    // Once the replaced ones have ended, 3 connections are served.
    let mut active = m.get("horizon_relay_connections_active");
    for _ in 0..100 {
        if active == 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        active = relay.scrape().await.get("horizon_relay_connections_active");
    }
    assert_eq!(active, 3.0);
    for c in conns.iter().chain([&other]) {
        c.close(0u32.into(), b"done");
    }
    relay.stop().await;
}

#[tokio::test]
async fn in_flight_limit_holds_batches_back_and_says_so_in_acks_and_metrics() {
    // Durable acks wait for a one-second flush, so the agent's pipelined
    // batches pile up against the connection's limit of 4.
    let relay = TestRelay::start(
        "server:\n  max_in_flight_batches_per_connection: 4\nparquet:\n  rotation_interval_secs: 1\n",
    )
    .await;
    let client = relay.client("gpu-node-7").await;
    let s = client
        .series("gpu_memory_used_bytes", &[("gpu", "0")])
        .unwrap();
    let mut waited = 0;
    for acked in send_values(&client, s, 0..12).await {
        assert_eq!(acked.ack.accepted, 1, "{:?}", acked.ack.rejections);
        assert_eq!(acked.ack.durability, Durability::Durable as i32);
        assert_eq!(acked.ack.queue_wait_ms, 0, "the sink queue had room");
        if acked.ack.in_flight_wait_ms > 0 {
            waited += 1;
        }
    }
    assert!(waited >= 1, "batches beyond the limit waited for a slot");
    let m = relay.scrape().await;
    assert_eq!(
        m.get(r#"horizon_relay_throttled_batches_total{limit="in_flight"}"#),
        f64::from(waited),
        "every wait the acks report is counted"
    );
    assert!(m.get(r#"horizon_relay_throttled_seconds_total{limit="in_flight"}"#) > 0.0);
    assert_eq!(
        m.get(r#"horizon_relay_throttled_batches_total{limit="sink_queue"}"#),
        0.0
    );
    let h = "horizon_relay_connection_in_flight_batches";
    assert_eq!(m.get(&format!("{h}_count")), 12.0);
    assert_eq!(
        m.get(&format!(r#"{h}_bucket{{le="4.0"}}"#)),
        12.0,
        "never more than the limit in flight"
    );
    assert!(
        m.get(&format!(r#"{h}_bucket{{le="2.0"}}"#)) < 12.0,
        "the agent did pipeline up to the limit"
    );
    assert_eq!(m.get("horizon_relay_in_flight_batches"), 0.0);
    assert_eq!(
        m.get(r#"horizon_relay_limit{limit="in_flight_batches_per_connection"}"#),
        4.0
    );
    client.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn keep_alives_hold_an_idle_connection_open_past_the_idle_timeout() {
    let relay =
        TestRelay::start("server:\n  keep_alive_secs: 1\n  connection_timeout_secs: 2\n").await;
    let mut cfg = relay.client_config("quiet-node");
    // The client alone would let the connection die: only the relay's
    // keep-alives can hold it.
    cfg.keep_alive = Duration::from_secs(3600);
    cfg.idle_timeout = Duration::from_secs(2);
    let client = Client::connect(cfg).await.unwrap();
    let s = client.series("gpu_util", &[]).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ack = client
        .send(Batch {
            points: vec![Point::now(s, 1.0)],
        })
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.ack.accepted, 1);
    assert_eq!(client.stats().connects, 1, "never reconnected");
    assert_eq!(ack.attempts, 1);
    client.close().await;
    relay.stop().await;
}
