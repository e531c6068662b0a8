//! The sender: connects to the relay (retrying with backoff until stopped)
//! and streams the spool to it, one record per batch. Each batch's ack is
//! awaited in a task of the sender's own [`JoinSet`], which records it in
//! the spool; when the sender stops, those tasks get a bounded time
//! (`flush`) to finish and the rest are aborted, so no ack task outlives
//! the sender. A batch whose ack was not recorded stays in the spool and is
//! sent again at the next start.

use std::sync::Arc;
use std::time::Duration;

use horizon_shared::client::{
    Batch, Client, ClientConfig, ClientError, PendingAck, Point, reconnect_pause,
};
use horizon_shared::proto::RejectReason;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::metrics::{Metrics, Reason};
use crate::record;
use crate::sink::SpoolSink;

fn reason_name(code: i32) -> String {
    RejectReason::try_from(code).map_or_else(
        |_| format!("code_{code}"),
        |r| {
            r.as_str_name()
                .trim_start_matches("REJECT_REASON_")
                .to_ascii_lowercase()
        },
    )
}

/// Connects (retrying with backoff, forever, until `stop`), then streams the
/// spool to the relay: each record is sent as one batch and acked in the
/// spool when the relay acks it. The client reconnects and resends by
/// itself. Once `stop` fires, the acks of the batches in flight get up to
/// `flush` to arrive, then the client closes; what was not acked is
/// replayed from the spool at the next start.
pub async fn run_sender(
    cfg: ClientConfig,
    sink: Arc<SpoolSink>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    flush: Duration,
) {
    let Some(client) = connect(&cfg, &stop).await else {
        return;
    };
    info!(relay = %cfg.addr, "connected to the relay");
    let mut acks = JoinSet::new();
    loop {
        // Acks recorded since the last batch: their tasks are done.
        while acks.try_join_next().is_some() {}
        if stop.is_cancelled() {
            break;
        }
        let next = sink.lock().next_unsent();
        let rec = match next {
            Ok(Some(r)) => r,
            Ok(None) => {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = sink.pushed() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            Err(e) => {
                error!(error = %e, "cannot read the spool; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let points = match record::decode(&rec.payload) {
            Ok(p) => p,
            Err(e) => {
                // CRC-checked, so only a bug could get here: skip the record.
                error!(seq = rec.seq, error = %e, "undecodable spool record skipped");
                let _ = sink.lock().ack(rec.seq);
                continue;
            }
        };
        let mut batch = Batch {
            points: Vec::with_capacity(points.len()),
        };
        for p in &points {
            let labels: Vec<(&str, &str)> = p
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match client.typed_series(&p.metric, &labels, p.metric_type) {
                Ok(id) => batch.points.push(Point::new(id, p.time_unix_nano, p.value)),
                Err(e) => {
                    warn!(metric = %p.metric, error = %e, "invalid series dropped");
                    metrics.dropped("invalid", 1);
                }
            }
        }
        let n = batch.points.len() as u64;
        let pending = tokio::select! {
            () = stop.cancelled() => break,
            r = client.send(batch) => r,
        };
        let pending = match pending {
            Ok(p) => p,
            Err(ClientError::Closed) => break,
            Err(e) => {
                error!(seq = rec.seq, error = %e, "batch refused by the client; it stays in the spool");
                continue;
            }
        };
        metrics.points_sent.inc_by(n);
        acks.spawn(record_ack(pending, sink.clone(), metrics.clone(), rec.seq));
    }
    // Give batches in flight a bounded time to be acked, then close.
    let settled = tokio::time::timeout(flush, async { while acks.join_next().await.is_some() {} })
        .await
        .is_ok();
    if settled {
        info!("every sent batch acked");
    } else {
        info!(
            unacked = acks.len(),
            "batches not acked in time stay in the spool"
        );
        acks.shutdown().await;
    }
    client.close().await;
}

/// Connects, retrying until `stop` (then `None`), with the client's own
/// pause between attempts ([`reconnect_pause`]: full jitter up to
/// `max_backoff`). The client's event hook counts the failures.
async fn connect(cfg: &ClientConfig, stop: &CancellationToken) -> Option<Client> {
    let mut failures = 0u32;
    let mut logged = None::<String>;
    loop {
        match Client::connect(cfg.clone()).await {
            Ok(c) => return Some(c),
            Err(e) => {
                failures = failures.saturating_add(1);
                let msg = e.to_string();
                if logged.as_deref() != Some(&msg) {
                    warn!(relay = %cfg.addr, error = %msg, reason = %e.connect_failure(), "cannot reach the relay; spooling and retrying");
                    logged = Some(msg);
                }
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(reconnect_pause(failures, cfg.max_backoff)) => {}
                }
            }
        }
    }
}

/// Waits for one batch's ack and records it: counted, and acked in the spool.
async fn record_ack(pending: PendingAck, sink: Arc<SpoolSink>, metrics: Arc<Metrics>, seq: u64) {
    match pending.await {
        Ok(acked) => {
            let a = acked.ack;
            metrics.batches_acked.inc();
            metrics.points_acked.inc_by(u64::from(a.accepted));
            for r in &a.rejections {
                let reason = reason_name(r.reason);
                warn!(%reason, count = r.count, example = %r.message, "the relay rejected points");
                metrics
                    .points_rejected
                    .get_or_create(&Reason { reason })
                    .inc_by(u64::from(r.count));
            }
            if let Err(e) = sink.lock().ack(seq) {
                error!(seq, error = %e, "cannot record an ack in the spool");
            }
        }
        Err(e) => debug!(seq, error = %e, "batch not acked; it stays in the spool"),
    }
}
