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
