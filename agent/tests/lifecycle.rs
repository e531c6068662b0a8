//! An agent running in the test against a real relay: its metrics endpoint
//! answers in OpenMetrics, and it shuts down in order: the sources stop
//! while the sender is still connected, the sender records the acks of the
//! batches in flight, and the spool is synced with nothing left unacked.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use horizon_agent::Agent;
use horizon_agent::config::Config;
use horizon_agent::gpu::{GpuSnapshot, GpuSource, NoGpu};
use horizon_agent::metrics::Metrics;
use horizon_agent::spool::{Spool, SpoolOptions};
use horizon_e2e::TestRelay;
use horizon_shared::http::METRICS_CONTENT_TYPE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A GPU source that says there is no GPU, and notes, when the agent drops
/// it (its poller stopped), whether the sender was still connected.
#[derive(Debug)]
struct Watched {
    metrics: Arc<OnceLock<Arc<Metrics>>>,
    stopped: Arc<Mutex<Vec<String>>>,
}

impl GpuSource for Watched {
    fn poll(&mut self) -> Result<GpuSnapshot, String> {
        Err("no GPU in this test".into())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let connected = self.metrics.get().map(|m| m.relay_connected.get());
        self.stopped
            .lock()
            .unwrap()
            .push(format!("GPU poller stopped; relay_connected {connected:?}"));
    }
}

fn yaml(relay: &TestRelay, spool: &std::path::Path, metrics_addr: &str) -> String {
    format!(
        "relay:\n  addr: {}\n  server_name: localhost\nspool:\n  dir: {}\ngpu:\n  interval_secs: 3600\nobservability:\n  metrics_addr: \"{metrics_addr}\"\n",
        relay.addr,
        spool.display()
    )
}

/// GETs `path`: the response's head (lowercase) and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_stop_first_then_the_sender_flushes_acks_then_the_spool_syncs() {
    let relay = TestRelay::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Config::from_yaml(&yaml(&relay, dir.path(), ""), "test")
        .unwrap()
        .validate()
        .unwrap();
    let (seen, stopped) = (Arc::new(OnceLock::new()), Arc::new(Mutex::new(Vec::new())));
    let source = Watched {
        metrics: seen.clone(),
        stopped: stopped.clone(),
    };
    let agent = Agent::start(
        settings,
        relay.node_tls("lifecycle-node"),
        Some(Box::new(source)),
    )
    .await
    .unwrap();
    seen.set(agent.metrics.clone()).unwrap();
    // Connected, and the poller's `gpu_up 0` handed to the relay.
    for _ in 0..300 {
        if agent.metrics.relay_connected.get() == 1 && agent.metrics.points_sent.get() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(agent.metrics.relay_connected.get(), 1, "never connected");
    assert!(agent.metrics.points_sent.get() >= 1, "nothing sent");
    let metrics = agent.metrics.clone();
    agent.stop().await.unwrap();

    assert_eq!(
        *stopped.lock().unwrap(),
        vec!["GPU poller stopped; relay_connected Some(1)".to_owned()],
        "the sources stop while the sender is still connected"
    );
    assert_eq!(metrics.relay_connected.get(), 0, "the sender stopped");
    assert_eq!(
        metrics.points_acked.get(),
        metrics.points_sent.get(),
        "the sender waited for the acks of what it sent"
    );
    let spool = Spool::open(
        dir.path(),
        SpoolOptions::default(),
        horizon_agent::sink::summarize,
    )
    .unwrap();
    assert_eq!(
        spool.stats().replayed_records,
        0,
        "every ack was recorded in the spool before it was synced"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_with_the_openmetrics_content_type() {
    let relay = TestRelay::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Config::from_yaml(&yaml(&relay, dir.path(), "127.0.0.1:0"), "test")
        .unwrap()
        .validate()
        .unwrap();
    let agent = Agent::start(
        settings,
        relay.node_tls("metrics-node"),
        Some(Box::new(NoGpu("no GPU in this test".into()))),
    )
    .await
    .unwrap();
    let addr = agent.metrics_addr.expect("metrics endpoint enabled");
    let (head, body) = get(addr, "/metrics").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-type: {METRICS_CONTENT_TYPE}\r\n")),
        "{head}"
    );
    assert!(body.contains("horizon_agent_relay_connected"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(get(addr, "/healthz").await.0.starts_with("http/1.1 200"));
    agent.stop().await.unwrap();
    relay.stop().await;
}
