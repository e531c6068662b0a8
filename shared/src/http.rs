//! The HTTP routes every Horizon process serves beside its work:
//! `/metrics` (its registry, as [`prometheus_client`] encodes it) and
//! `/healthz` (the process is up). The relay adds `/readyz`.

use axum::Router;
use axum::http::header;
use axum::routing::get;

/// The Content-Type of `/metrics`: `prometheus_client`'s text encoder
/// writes OpenMetrics 1.0 (it ends with `# EOF`, which the Prometheus 0.0.4
/// text format does not have).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `/metrics`, answering with what `render` returns (an OpenMetrics text
/// exposition), and `/healthz`.
pub fn metrics_router<F>(render: F) -> Router
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = render();
                async move { ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics_text() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = metrics_router(|| "up 1\n# EOF\n".to_owned());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let head = raw.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{raw}");
        assert!(
            head.contains(&format!("content-type: {METRICS_CONTENT_TYPE}\r\n")),
            "{raw}"
        );
        assert!(raw.ends_with("up 1\n# EOF\n"), "{raw}");
    }
}
