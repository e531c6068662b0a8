use std::time::Duration;

use horizon_shared::http::METRICS_CONTENT_TYPE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::budget::Budgets;

/// GETs `path`: the response's head (lowercase) and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

/// The exposition ends with `# EOF`: it is OpenMetrics, and says so.
#[tokio::test]
async fn metrics_are_served_with_the_openmetrics_content_type() {
    let settings = crate::config::Config::default()
        .validate()
        .expect("default configuration is valid");
    let budgets = Arc::new(Budgets::new(settings.budgets.clone()));
    let metrics = Arc::new(RelayMetrics::new(budgets, &settings));
    let ready = Arc::new(Readiness::new(
        Arc::default(),
        Some(Duration::from_secs(60)),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, metrics, ready, stop.clone()));

    let (head, body) = get(addr, "/metrics").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-type: {METRICS_CONTENT_TYPE}\r\n")),
        "{head}"
    );
    assert!(body.contains("horizon_relay_connections_active"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    let (head, _) = get(addr, "/readyz").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    stop.cancel();
    server.await.unwrap().unwrap();
}
