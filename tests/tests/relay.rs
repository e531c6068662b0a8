//! End-to-end tests of the relay over real QUIC on loopback.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use horizon_e2e::{TestRelay, queue_values, send_values};
use horizon_shared::client::{Batch, Client, Point, unix_nanos_now};
use horizon_shared::codec::{self, FrameReader};
use horizon_shared::devcerts::DevCa;
use horizon_shared::proto::{
    AgentFrame, BatchAck, Durability, MetricBatch, RejectReason, RelayFrame, SeriesDef,
    agent_frame, error_code, relay_frame,
};
use horizon_shared::tls::{TlsMaterial, quic_client_config};

fn reasons(ack: &BatchAck) -> Vec<(RejectReason, u32)> {
    ack.rejections
        .iter()
        .map(|r| {
            (
                RejectReason::try_from(r.reason).expect("known reason"),
                r.count,
            )
        })
        .collect()
}

/// A raw QUIC connection with the given client config (no agent client).
async fn raw_connect(
    addr: std::net::SocketAddr,
    cfg: quinn::ClientConfig,
) -> Result<quinn::Connection, String> {
    let mut ep =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).map_err(|e| e.to_string())?;
    ep.set_default_client_config(cfg);
    let conn = ep.connect(addr, "localhost").map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .map_err(|_| "handshake timeout".to_owned())?
        .map_err(|e| e.to_string())
}

fn one_point_batch(seq: u64) -> AgentFrame {
    AgentFrame {
        kind: Some(agent_frame::Kind::Batch(MetricBatch {
            sequence: seq,
            series_defs: vec![SeriesDef {
                id: 0,
                metric: "gpu_util".into(),
                labels: vec![],
            }],
            series_ids: vec![0],
            base_time_unix_nano: unix_nanos_now(),
            time_deltas: vec![0],
            values: vec![1.0],
        })),
    }
}

/// Connects, sends one valid batch on a new stream and reads the ack.
async fn exchange(
    addr: std::net::SocketAddr,
    cfg: quinn::ClientConfig,
) -> Result<BatchAck, String> {
    let conn = raw_connect(addr, cfg).await?;
    let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(&codec::encode_to_vec(&one_point_batch(1)))
        .await
        .map_err(|e| e.to_string())?;
    let mut reader = FrameReader::new(recv, 1 << 20);
    let frame = tokio::time::timeout(Duration::from_secs(5), reader.next::<RelayFrame>())
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
    match frame.and_then(|f| f.kind) {
        Some(relay_frame::Kind::Ack(a)) => Ok(a),
        other => Err(format!("unexpected {other:?}")),
    }
}

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

/// Reads a stream until it ends; returns the reset code if it was reset.
async fn reset_code(recv: quinn::RecvStream) -> Option<u64> {
    let mut reader = FrameReader::new(recv, 1 << 20);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), reader.next::<RelayFrame>())
            .await
            .expect("relay answers")
        {
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(horizon_shared::codec::FrameError::Io(e)) => {
                let inner = e.into_inner().expect("quinn read error inside");
                return match inner.downcast::<quinn::ReadError>().map(|b| *b) {
                    Ok(quinn::ReadError::Reset(code)) => Some(code.into_inner()),
                    other => panic!("unexpected read error {other:?}"),
                };
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

#[tokio::test]
async fn bad_input_resets_only_its_stream_and_other_connections_carry_on() {
    let relay = TestRelay::start("limits:\n  max_frame_bytes: 65536\n").await;
    // A well-behaved agent keeps streaming the whole time.
    let good = relay.client("good-node").await;
    let s = good
        .series("gpu_temperature_celsius", &[("gpu", "0")])
        .unwrap();
    let steady = tokio::spawn(async move {
        let mut pending = Vec::new();
        for _ in 0..200 {
            pending.push(
                good.send(Batch {
                    points: vec![Point::now(s, 55.0); 10],
                })
                .await
                .unwrap(),
            );
            tokio::task::yield_now().await;
        }
        let mut accepted = 0;
        for p in pending {
            accepted += p.await.unwrap().ack.accepted;
        }
        good.close().await;
        accepted
    });

    let bad = raw_connect(
        relay.addr,
        quic_client_config(&relay.node_tls("bad-node")).unwrap(),
    )
    .await
    .unwrap();
    let cases: Vec<(&str, Vec<u8>, bool, u64)> = vec![
        (
            "oversize length prefix",
            vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
            false,
            error_code::FRAME_TOO_LARGE.into(),
        ),
        (
            "zero-length frame",
            vec![0, 0, 0, 0],
            false,
            error_code::MALFORMED_FRAME.into(),
        ),
        (
            "garbage payload",
            [&[0u8, 0, 0, 12][..], &[0xff; 12][..]].concat(),
            false,
            error_code::MALFORMED_FRAME.into(),
        ),
        (
            "truncated frame",
            [&[0u8, 0, 0, 100][..], &[0x08; 40][..]].concat(),
            true,
            error_code::MALFORMED_FRAME.into(),
        ),
    ];
    for (what, bytes, finish, want) in cases {
        let (mut send, recv) = bad.open_bi().await.unwrap();
        send.write_all(&bytes).await.unwrap();
        if finish {
            send.finish().unwrap();
        }
        assert_eq!(reset_code(recv).await, Some(want), "{what}");
    }
    // The same connection still works on a new stream after all that.
    let (mut send, recv) = bad.open_bi().await.unwrap();
    send.write_all(&codec::encode_to_vec(&one_point_batch(9)))
        .await
        .unwrap();
    send.finish().unwrap();
    let mut reader = FrameReader::new(recv, 1 << 20);
    let frame = reader.next::<RelayFrame>().await.unwrap().unwrap();
    assert!(matches!(
        frame.kind,
        Some(relay_frame::Kind::Ack(BatchAck {
            sequence: 9,
            accepted: 1,
            ..
        }))
    ));

    assert_eq!(steady.await.unwrap(), 2000, "the good agent lost nothing");
    let m = relay.scrape().await;
    assert_eq!(
        m.get(r#"horizon_relay_stream_errors_total{kind="frame_too_large"}"#),
        1.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_stream_errors_total{kind="malformed_frame"}"#),
        2.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_stream_errors_total{kind="truncated_frame"}"#),
        1.0
    );
    relay.stop().await;
}

#[tokio::test]
async fn invalid_points_get_a_clear_ack_and_valid_ones_flow() {
    let relay = TestRelay::start("").await;
    let c = relay.client("n1").await;
    let ok = c.series("gpu_util", &[]).unwrap();
    let empty = c.series_unchecked("", &[]);
    let huge_labels: Vec<(String, String)> =
        (0..100).map(|i| (format!("k{i}"), "v".into())).collect();
    let huge_refs: Vec<(&str, &str)> = huge_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let huge = c.series_unchecked("gpu_util", &huge_refs);
    let t = unix_nanos_now();
    let points = vec![
        Point::new(ok, t, 1.0),
        Point::new(ok, t, f64::NAN),
        Point::new(ok, 0, 1.0),
        Point::new(ok, i64::MAX, 1.0),
        Point::new(empty, t, 1.0),
        Point::new(huge, t, 1.0),
        Point::new(ok, t + 1, 2.0),
    ];
    let ack = c.send(Batch { points }).await.unwrap().await.unwrap().ack;
    assert_eq!((ack.accepted, ack.rejected), (2, 5));
    assert_eq!(reasons(&ack), vec![(RejectReason::Invalid, 5)]);
    // Too many points for limits.max_batch_size (1000): refused as a whole.
    let mut raw_client_cfg = relay.client_config("n2");
    raw_client_cfg.max_batch_points = 5000;
    let c2 = Client::connect(raw_client_cfg).await.unwrap();
    let s2 = c2.series("gpu_util", &[]).unwrap();
    let ack = c2
        .send(Batch {
            points: vec![Point::now(s2, 1.0); 1001],
        })
        .await
        .unwrap()
        .await
        .unwrap()
        .ack;
    assert_eq!(reasons(&ack), vec![(RejectReason::TooLarge, 1001)]);
    let m = relay.scrape().await;
    assert_eq!(
        m.get(r#"horizon_relay_points_rejected_total{reason="invalid"}"#),
        5.0
    );
    assert_eq!(
        m.get(r#"horizon_relay_points_rejected_total{reason="too_large"}"#),
        1001.0
    );
    c.close().await;
    c2.close().await;
    relay.stop().await;
}

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
async fn graceful_stop_sends_go_away_and_the_client_moves_on() {
    let relay = TestRelay::start("").await;
    let (pki, addr) = (relay.pki.clone(), relay.addr);
    let client = relay.client("mover").await;
    let s = client.series("gpu_util", &[]).unwrap();
    let ack = client
        .send(Batch {
            points: vec![Point::now(s, 1.0)],
        })
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.ack.accepted, 1);
    relay.stop().await;
    let relay = TestRelay::start_at(pki, "", Some(addr)).await;
    let ack = tokio::time::timeout(
        Duration::from_secs(20),
        client
            .send(Batch {
                points: vec![Point::now(s, 2.0)],
            })
            .await
            .unwrap(),
    )
    .await
    .expect("acked by the new relay")
    .unwrap();
    assert_eq!(ack.ack.accepted, 1);
    assert!(client.stats().connects >= 2);
    client.close().await;
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

#[tokio::test]
async fn health_endpoints_answer() {
    let relay = TestRelay::start("").await;
    assert_eq!(relay.http_get("/healthz").await.0, 200);
    assert_eq!(relay.http_get("/readyz").await.0, 200);
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

#[tokio::test]
async fn readiness_fails_as_soon_as_a_drain_starts() {
    let mut relay = TestRelay::start("").await;
    assert_eq!(relay.http_get("/readyz").await.0, 200);
    // A peer that ignores GoAway keeps its stream open, so the drain lasts
    // its whole grace period.
    let conn = raw_connect(
        relay.addr,
        quic_client_config(&relay.node_tls("stubborn")).unwrap(),
    )
    .await
    .unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&codec::encode_to_vec(&one_point_batch(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    relay.begin_stop();
    let mut saw = 0;
    for _ in 0..40 {
        let (code, body) = relay.http_get("/readyz").await;
        if code == 503 {
            assert!(body.contains("draining"), "{body}");
            saw = code;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(saw, 503, "/readyz fails while draining");
    assert_eq!(
        relay.http_get("/healthz").await.0,
        200,
        "still alive while draining"
    );
    drop(conn);
    relay.stop().await;
}

/// Every metric the Grafana dashboard queries exists on a running relay, so
/// the dashboard cannot silently drift from the code.
#[tokio::test]
async fn grafana_dashboard_queries_only_metrics_the_relay_exports() {
    let relay = TestRelay::start("").await;
    // One accepted batch, so that every family has samples.
    let c = relay.client("dash-node").await;
    let s = c.series("gpu_util", &[]).unwrap();
    c.send(Batch {
        points: vec![Point::now(s, 1.0)],
    })
    .await
    .unwrap()
    .await
    .unwrap();
    let (_, body) = relay.http_get("/metrics").await;
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../infra/grafana/relay-dashboard.json")).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("horizon_relay_"))
            {
                let family = name.trim_end_matches("_bucket");
                assert!(
                    body.lines().any(|l| l.starts_with(family)),
                    "dashboard panel {:?} queries {name}, which /metrics does not export",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "checked {checked} metric references");
    c.close().await;
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
