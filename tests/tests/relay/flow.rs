//! Batches through the agent client: acks, counts, resends after a lost connection.

use super::*;

#[tokio::test]
async fn batches_sent_through_the_client_are_acked_and_counted() {
    let relay = TestRelay::start("").await;
    let client = relay.client("gpu-node-1").await;
    let series: Vec<_> = (0..10)
        .map(|g| {
            client
                .series("gpu_utilization_percent", &[("gpu", &g.to_string())])
                .unwrap()
        })
        .collect();
    let mut pending = Vec::new();
    for b in 0..50 {
        let t = unix_nanos_now();
        let points = (0..100)
            .map(|i| Point::new(series[i % 10], t + (i / 10) as i64, (b * i) as f64))
            .collect();
        pending.push(client.send(Batch { points }).await.unwrap());
    }
    let mut accepted = 0;
    for (i, p) in pending.into_iter().enumerate() {
        let acked = p.await.unwrap();
        assert_eq!(acked.ack.sequence, i as u64 + 1);
        assert_eq!(acked.ack.rejected, 0, "{:?}", acked.ack.rejections);
        assert_eq!(acked.attempts, 1);
        accepted += acked.ack.accepted;
    }
    assert_eq!(accepted, 5000);
    let m = relay.scrape().await;
    assert_eq!(m.get("horizon_relay_batches_total"), 50.0);
    assert_eq!(m.get("horizon_relay_points_received_total"), 5000.0);
    assert_eq!(m.get("horizon_relay_points_accepted_total"), 5000.0);
    assert_eq!(m.get("horizon_relay_budget_series"), 10.0);
    assert_eq!(m.get("horizon_relay_connections_active"), 1.0);
    assert_eq!(
        m.get(r#"horizon_relay_budget_node_series{node="gpu-node-1"}"#),
        10.0
    );
    client.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn unacked_batches_are_resent_after_the_connection_is_lost() {
    let first = TestRelay::start("").await;
    let (pki, addr) = (first.pki.clone(), first.addr);
    let cfg = first.client_config("resender");
    first.stop().await;

    // A stand-in peer on the relay's address: it completes the handshake,
    // reads three batches, never acks them, and drops the connection.
    let mut server = horizon_shared::tls::quic_server_config(&pki.server_tls()).unwrap();
    server.transport_config(Arc::new(quinn::TransportConfig::default()));
    // The relay's socket may take a moment to be released.
    let mut silent = None;
    for _ in 0..50 {
        match quinn::Endpoint::server(server.clone(), addr) {
            Ok(e) => {
                silent = Some(e);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let silent = silent.expect("stand-in binds the relay's address");
    let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
    let silent_task = tokio::spawn(async move {
        let conn = silent.accept().await.unwrap().await.unwrap();
        let (_send, recv) = conn.accept_bi().await.unwrap();
        let mut reader = FrameReader::new(recv, 1 << 20);
        let mut seqs = Vec::new();
        while seqs.len() < 3 {
            if let Some(AgentFrame {
                kind: Some(agent_frame::Kind::Batch(b)),
            }) = reader.next().await.unwrap()
            {
                seqs.push(b.sequence);
            }
        }
        conn.close(0u32.into(), b"gone");
        silent.close(0u32.into(), b"gone");
        silent.wait_idle().await;
        drop(silent);
        let _ = taken_tx.send(seqs);
    });

    let client = Client::connect(cfg).await.unwrap();
    let s = client.series("gpu_util", &[("gpu", "0")]).unwrap();
    let pending = queue_values(&client, s, 0..3).await;
    assert_eq!(
        taken_rx.await.unwrap(),
        vec![1, 2, 3],
        "the stand-in read all three"
    );
    silent_task.await.unwrap();

    // The real relay comes back on the same address; the client reconnects
    // and resends the three unacked batches on a new stream, series
    // definitions included.
    let relay = TestRelay::start_at(pki, "", Some(addr)).await;
    for (i, p) in pending.into_iter().enumerate() {
        let acked = tokio::time::timeout(Duration::from_secs(20), p)
            .await
            .expect("acked after reconnect")
            .unwrap();
        assert_eq!(acked.ack.sequence, i as u64 + 1);
        assert_eq!(acked.ack.accepted, 1);
        assert_eq!(acked.attempts, 2);
    }
    let stats = client.stats();
    assert_eq!(stats.resends, 3);
    assert!(stats.connects >= 2);
    assert_eq!(
        relay
            .scrape()
            .await
            .get("horizon_relay_points_accepted_total"),
        3.0
    );
    client.close().await;
    relay.stop().await;
}
