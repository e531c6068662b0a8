//! End-to-end tests of the relay over real QUIC on loopback, one module per
//! topic in one test binary (the heavy dependencies link once).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use horizon_e2e::{Metrics, TestRelay, queue_values, send_values};
use horizon_shared::client::{Batch, Client, Point};
use horizon_shared::clock::unix_nanos_now;
use horizon_shared::codec::{self, FrameReader};
use horizon_shared::devcerts::DevCa;
use horizon_shared::proto::{
    AgentFrame, BatchAck, Durability, MetricBatch, RejectReason, RelayFrame, SeriesDef,
    agent_frame, error_code, relay_frame,
};
use horizon_shared::tls::{TlsMaterial, quic_client_config};

mod bad_input;
mod drain;
mod failover;
mod flow;
mod limits;
mod ops;
mod revocation;
mod spec;
mod tls;

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

/// Scrapes until `done` holds, at most 200 times 25 ms; returns the last
/// scrape either way (the caller asserts on it).
async fn scrape_until(relay: &TestRelay, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let mut m = relay.scrape().await;
    for _ in 0..200 {
        if done(&m) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        m = relay.scrape().await;
    }
    m
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
                metric_type: 0,
            }],
            series_ids: vec![0],
            base_time_unix_nano: unix_nanos_now(),
            time_deltas: vec![0],
            values: vec![1.0],
        })),
    }
}

/// Sends `bytes` on a new stream of `conn`, finishing the stream if
/// `finish`, and reads the relay's first frame as an ack within `wait`.
async fn send_and_ack(
    conn: &quinn::Connection,
    bytes: &[u8],
    finish: bool,
    wait: Duration,
) -> Result<BatchAck, String> {
    let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    if finish {
        send.finish().map_err(|e| e.to_string())?;
    }
    let mut reader = FrameReader::new(recv, 1 << 20);
    let frame = tokio::time::timeout(wait, reader.next::<RelayFrame>())
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
    match frame.and_then(|f| f.kind) {
        Some(relay_frame::Kind::Ack(a)) => Ok(a),
        other => Err(format!("unexpected {other:?}")),
    }
}

/// Sends one valid batch of sequence `seq` on a new stream of `conn` and
/// reads its ack.
async fn ack_on(conn: &quinn::Connection, seq: u64) -> BatchAck {
    let batch = codec::encode_to_vec(&one_point_batch(seq));
    send_and_ack(conn, &batch, true, Duration::from_secs(30))
        .await
        .unwrap()
}

/// Connects, sends one valid batch on a new stream and reads the ack.
async fn exchange(
    addr: std::net::SocketAddr,
    cfg: quinn::ClientConfig,
) -> Result<BatchAck, String> {
    let conn = raw_connect(addr, cfg).await?;
    let batch = codec::encode_to_vec(&one_point_batch(1));
    send_and_ack(&conn, &batch, false, Duration::from_secs(5)).await
}
