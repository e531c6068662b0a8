//! Batches through the agent client: acks, counts, resends after a lost connection.

use super::*;

use horizon_e2e::flood::{DefinitionShape, OpenStream, definitions_frame, raw_connect};

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

#[tokio::test]
async fn only_frames_that_waited_for_the_frame_buffer_are_counted() {
    const BATCHES: &str = "horizon_relay_batches_total";
    const WAITED: &str = r#"horizon_relay_throttled_batches_total{limit="frame_buffer"}"#;
    const WAITED_SECONDS: &str = r#"horizon_relay_throttled_seconds_total{limit="frame_buffer"}"#;
    const HELD: &str = "horizon_relay_frame_buffer_bytes";
    // One connection may hold 4096 bytes of frames being read.
    let relay = TestRelay::start(
        "limits:\n  max_frame_bytes: 4096\n  max_frame_buffer_bytes_per_connection: 4096\n",
    )
    .await;
    let conn = raw_connect(
        relay.addr,
        &relay.node_tls("gpu-node-1"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let small = |seq| {
        let shape = DefinitionShape {
            labels: 0,
            value_bytes: 0,
        };
        definitions_frame(seq, 1..1, shape, 0)
    };
    // Two frames of which either fits alone, but not both at once.
    let large = |seq| {
        let shape = DefinitionShape {
            labels: 4,
            value_bytes: 500,
        };
        codec::encode_to_vec(&definitions_frame(seq, 1..2, shape, 0))
    };
    let (a, b) = (large(10), large(20));
    let payload = |f: &[u8]| f.len() - codec::HEADER_LEN;
    assert!(payload(&a) <= 4096 && payload(&a) + payload(&b) > 4096);

    // Batches that find room at once did not wait, and are not counted.
    let mut steady = OpenStream::open(&conn).await.unwrap();
    let acks = steady
        .exchange([1u64, 2, 3].into_iter().map(small))
        .await
        .unwrap();
    assert!(acks.iter().all(|a| a.accepted == 1), "{acks:?}");
    let m = relay.scrape().await;
    assert_eq!(m.get(BATCHES), 3.0);
    assert_eq!(m.get(WAITED), 0.0, "no batch waited for the frame buffer");
    assert_eq!(m.get(WAITED_SECONDS), 0.0);

    // Stream A announces its frame and sends half of it: its bytes are held.
    let (mut send_a, recv_a) = conn.open_bi().await.unwrap();
    let half = codec::HEADER_LEN + payload(&a) / 2;
    send_a.write_all(&a[..half]).await.unwrap();
    let m = scrape_until(&relay, |m| m.get(HELD) == payload(&a) as f64).await;
    assert_eq!(m.get(HELD), payload(&a) as f64);

    // Stream B's frame does not fit beside it: it waits for room.
    let mut waiting = OpenStream::open(&conn).await.unwrap();
    let b_acked = tokio::spawn(async move {
        let mut bytes = bytes::BytesMut::from(&b[..]);
        let frame: AgentFrame = codec::decode(&mut bytes, 1 << 20).unwrap().unwrap();
        waiting.exchange(std::iter::once(frame)).await
    });
    // Three streams open (steady, A, B): B's length prefix has arrived.
    scrape_until(&relay, |m| m.get("horizon_relay_streams_active") == 3.0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !b_acked.is_finished(),
        "B is held back while A holds the buffer"
    );

    // A's frame is finished and acked; B then gets room, is read and acked.
    send_a.write_all(&a[half..]).await.unwrap();
    let mut acks_a = FrameReader::new(recv_a, 1 << 20);
    match acks_a
        .next::<RelayFrame>()
        .await
        .unwrap()
        .and_then(|f| f.kind)
    {
        Some(relay_frame::Kind::Ack(ack)) => assert_eq!((ack.sequence, ack.accepted), (10, 1)),
        other => panic!("unexpected {other:?}"),
    }
    let b_acks = b_acked.await.unwrap().unwrap();
    assert_eq!((b_acks[0].sequence, b_acks[0].accepted), (20, 1));

    let m = relay.scrape().await;
    assert_eq!(m.get(BATCHES), 5.0);
    assert_eq!(
        m.get(WAITED),
        1.0,
        "B, and only B, waited for the frame buffer"
    );
    assert!(m.get(WAITED_SECONDS) > 0.0);
    conn.close(0u32.into(), b"done");
    relay.stop().await;
}

#[tokio::test]
async fn clients_sharing_one_endpoint_are_each_served_and_one_closing_leaves_the_others() {
    let relay = TestRelay::start("").await;
    let endpoint = horizon_shared::client::open_endpoint().unwrap();
    let port = endpoint.local_addr().unwrap().port();
    let mut clients = Vec::new();
    for n in 0..3 {
        let mut cfg = relay.client_config(&format!("gpu-node-{n}"));
        cfg.endpoint = Some(endpoint.clone());
        clients.push(Client::connect(cfg).await.unwrap());
    }
    async fn send(c: &Client, v: f64) -> u32 {
        let id = c
            .series("gpu_temperature_celsius", &[("gpu", "0")])
            .unwrap();
        let batch = Batch {
            points: vec![Point::new(id, unix_nanos_now(), v)],
        };
        c.send(batch).await.unwrap().await.unwrap().ack.accepted
    }
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(send(c, i as f64).await, 1, "client {i}");
    }
    assert_eq!(
        relay.scrape().await.get("horizon_relay_connections_active"),
        3.0
    );
    // All three through the one endpoint.
    assert_eq!(endpoint.open_connections(), 3);
    // One client closing closes its connection, not the endpoint.
    let first = clients.remove(0);
    first.close().await;
    for (i, c) in clients.iter().enumerate() {
        let accepted = send(c, 10.0 + i as f64).await;
        assert_eq!(accepted, 1, "client {} after the first closed", i + 1);
    }
    assert_eq!(endpoint.open_connections(), 2);
    assert_eq!(endpoint.local_addr().unwrap().port(), port);
    for c in clients {
        c.close().await;
    }
    relay.stop().await;
}
