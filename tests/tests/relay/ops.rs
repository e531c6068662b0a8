//! Operations: health endpoints, and the Grafana dashboard against the exported metrics.

use super::*;

#[tokio::test]
async fn health_endpoints_answer() {
    let relay = TestRelay::start("").await;
    assert_eq!(relay.http_get("/healthz").await.0, 200);
    assert_eq!(relay.http_get("/readyz").await.0, 200);
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
        serde_json::from_str(include_str!("../../../infra/grafana/relay-dashboard.json")).unwrap();
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

#[tokio::test]
async fn batches_whose_acks_cannot_be_written_are_still_counted() {
    use horizon_e2e::flood::{DefinitionShape, definitions_frame, raw_connect};
    // Durable acks wait up to 2 s for the flush; the agent leaves before.
    let relay = TestRelay::start("parquet:\n  rotation_interval_secs: 2\n").await;
    let conn = raw_connect(
        relay.addr,
        &relay.node_tls("leaver"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let shape = DefinitionShape {
        labels: 0,
        value_bytes: 0,
    };
    for seq in 1..=3 {
        send.write_all(&codec::encode_to_vec(&definitions_frame(
            seq,
            1..1,
            shape,
            0,
        )))
        .await
        .unwrap();
    }
    // Wait until the relay has read all three, then go away unacked.
    let mut m = relay.scrape().await;
    for _ in 0..200 {
        if m.get("horizon_relay_in_flight_batches") >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = relay.scrape().await;
    }
    assert_eq!(m.get("horizon_relay_in_flight_batches"), 3.0);
    conn.close(0u32.into(), b"leaving");
    // Their points reached the sinks: once stored, all three count.
    for _ in 0..200 {
        m = relay.scrape().await;
        if m.get("horizon_relay_in_flight_batches") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m.get("horizon_relay_points_accepted_total"), 3.0);
    assert_eq!(m.get("horizon_relay_batches_total"), 3.0);
    relay.stop().await;
}
