//! Scrapes ask for gzip and read a gzipped exposition: a target served by
//! the test answers with `Content-Encoding: gzip` when the request accepts
//! it, and the agent's scrape client parses every sample.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use horizon_agent::config::Target;
use horizon_agent::scrape::{fetch, http_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A target that gzips `body` when the request accepts gzip; it keeps the
/// request heads it got (lower case).
async fn gzip_target(body: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            let gzip = head
                .lines()
                .any(|l| l.starts_with("accept-encoding:") && l.contains("gzip"));
            seen.lock().unwrap().push(head);
            let (encoding, bytes) = if gzip {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(body.as_bytes()).unwrap();
                ("Content-Encoding: gzip\r\n", enc.finish().unwrap())
            } else {
                ("", body.clone().into_bytes())
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.write_all(&bytes).await;
            let _ = sock.shutdown().await;
        }
    });
    (url, heads)
}

fn target(url: &str) -> Target {
    Target {
        name: "gzip".into(),
        url: url.into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        labels: vec![],
        allow: vec![],
        deny: vec![],
        drop_labels: vec![],
        placeholder_min: None,
        placeholder_metrics: vec![],
    }
}

#[tokio::test]
async fn a_gzipped_exposition_is_asked_for_and_read() {
    // 8 GPUs x 60 fields in dcgm-exporter's shape: text that compresses well.
    let body: String = (0..480)
        .map(|i| {
            format!(
                "DCGM_FI_DEV_FIELD_{}{{gpu=\"{}\",UUID=\"GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e5{}\",modelName=\"NVIDIA H100 80GB HBM3\"}} {}\n",
                i % 60,
                i % 8,
                i % 8,
                i
            )
        })
        .collect();
    let (url, heads) = gzip_target(body.clone()).await;
    let expo = fetch(&http_client().unwrap(), &target(&url))
        .await
        .expect("the gzipped exposition is read");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0]
            .lines()
            .any(|l| l.starts_with("accept-encoding:") && l.contains("gzip")),
        "the scrape asks for gzip: {}",
        heads[0]
    );
    assert_eq!(expo.samples.len(), 480);
    assert!(expo.errors.is_empty(), "{:?}", expo.errors);
    let values: Vec<f64> = expo.samples.iter().map(|s| s.value).collect();
    let expect: Vec<f64> = (0..480).map(f64::from).collect();
    assert_eq!(values, expect);
    assert_eq!(expo.samples[9].labels[0], ("gpu".into(), "1".into()));
}
