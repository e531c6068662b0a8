//! Bad input: streams ended (STOP_SENDING, then the acks and FIN) sparing everything else, and clear acks for invalid points.

use super::*;

/// Reads the relay's half of a stream to its end (which must be a clean
/// FIN, not a reset) and returns the acks on it, with the code of the
/// STOP_SENDING on the agent's half (none if the agent had finished it and
/// the relay had read everything).
async fn acks_then_stop(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> (Vec<BatchAck>, Option<u64>) {
    let mut reader = FrameReader::new(recv, 1 << 20);
    let mut acks = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), reader.next::<RelayFrame>())
            .await
            .expect("relay answers")
        {
            Ok(Some(RelayFrame {
                kind: Some(relay_frame::Kind::Ack(a)),
            })) => acks.push(a),
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => break,
            Err(e) => panic!("the relay's half must end with FIN, not {e}"),
        }
    }
    let stopped = tokio::time::timeout(Duration::from_secs(5), send.stopped())
        .await
        .expect("the agent's half is stopped or fully read")
        .expect("stream state");
    (acks, stopped.map(|c| c.into_inner()))
}

/// A one-point batch whose metric name is "gpu_util" with its `_` replaced
/// by the byte 0xff: the same length, not UTF-8.
fn not_utf8_batch(seq: u64) -> Vec<u8> {
    let mut bytes = codec::encode_to_vec(&one_point_batch(seq));
    let at = bytes
        .windows(8)
        .position(|w| w == b"gpu_util")
        .expect("the name is in the frame");
    bytes[at + 3] = 0xff;
    bytes
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
    // Each bad frame follows a valid batch on its stream: that batch was
    // processed, so its ack must reach the agent before the stream ends.
    let cases: Vec<(&str, Vec<u8>, bool, Option<u64>)> = vec![
        (
            "oversize length prefix",
            vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
            false,
            Some(error_code::FRAME_TOO_LARGE.into()),
        ),
        (
            "zero-length frame",
            vec![0, 0, 0, 0],
            false,
            Some(error_code::MALFORMED_FRAME.into()),
        ),
        (
            "garbage payload",
            [&[0u8, 0, 0, 12][..], &[0xff; 12][..]].concat(),
            false,
            Some(error_code::MALFORMED_FRAME.into()),
        ),
        // A name that is not UTF-8 makes the payload an invalid protobuf
        // message (a `string` field), not an INVALID point (protocol.md §5).
        (
            "metric name not UTF-8",
            not_utf8_batch(99),
            false,
            Some(error_code::MALFORMED_FRAME.into()),
        ),
        // The agent finished its half: nothing is left to stop.
        (
            "truncated frame",
            [&[0u8, 0, 0, 100][..], &[0x08; 40][..]].concat(),
            true,
            None,
        ),
    ];
    for (i, (what, bytes, finish, want)) in cases.into_iter().enumerate() {
        let (mut send, recv) = bad.open_bi().await.unwrap();
        let seq = 100 + i as u64;
        let valid = codec::encode_to_vec(&one_point_batch(seq));
        send.write_all(&[valid, bytes].concat()).await.unwrap();
        if finish {
            send.finish().unwrap();
        }
        let (acks, stopped) = acks_then_stop(send, recv).await;
        assert_eq!(stopped, want, "{what}: STOP_SENDING code");
        assert_eq!(
            acks.len(),
            1,
            "{what}: the batch before the bad frame is acked"
        );
        assert_eq!((acks[0].sequence, acks[0].accepted), (seq, 1), "{what}");
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
        3.0
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
