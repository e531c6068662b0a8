//! Graceful stop: GoAway, and readiness failing as soon as a drain starts.

use super::*;

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
