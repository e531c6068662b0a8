//! The sender: connects to the relay (retrying with backoff until stopped)
//! and streams the spool to it. Each batch's ack is awaited in a task of
//! the sender's own [`JoinSet`], which records it in the spool; when the
//! sender stops, those tasks get a bounded time (`flush`) to finish and the
//! rest are aborted, so no ack task outlives the sender. A batch whose ack
//! was not recorded stays in the spool and is sent again at the next start.
//!
//! ## Catch-up
//! A spool holds one record per scrape (480 points for 8 GPUs). The
//! backlog is sent in full batches: records in order, as many as fit in
//! `relay.max_batch_points`, acked together. The [`Window`] of unacked
//! batches grows while the backlog is held back by it and shrinks on the
//! relay's pushback. Fresh records (the newest [`FRESH_RECORDS`] appended)
//! go first, one batch each, so points just collected wait at most for one
//! free slot in the window, not behind the backlog.
//!
//! [`FRESH_RECORDS`]: crate::spool::FRESH_RECORDS

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
use crate::spool::{Record, Spool, SpoolError};

mod window;
pub use window::{AckRoom, MAX_WINDOW, Window};

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

/// The records of the next batch: the oldest fresh record alone if there
/// is one, else backlog records in order, as many as fit in `max_points`
/// (always at least one). `carry` keeps a record read that did not fit, for
/// the next batch. Empty when everything was handed out.
pub fn take_batch(
    spool: &mut Spool,
    carry: &mut Option<Record>,
    max_points: u64,
) -> Result<Vec<Record>, SpoolError> {
    if let Some(r) = spool.next_fresh() {
        return Ok(vec![r]);
    }
    let mut out: Vec<Record> = carry.take().into_iter().collect();
    let mut points: u64 = out.iter().map(|r| record::points_of(&r.payload)).sum();
    while points < max_points {
        let Some(r) = spool.next_unsent()? else {
            break;
        };
        let n = record::points_of(&r.payload);
        if !out.is_empty() && points + n > max_points {
            *carry = Some(r);
            break;
        }
        points += n;
        out.push(r);
    }
    Ok(out)
}

/// Connects (retrying with backoff, forever, until `stop`), then streams the
/// spool to the relay in batches of [`take_batch`], acked in the spool when
/// the relay acks them, within a [`Window`] that starts at `cfg.window`.
/// The client reconnects and resends by itself. Once `stop` fires, the acks
/// of the batches in flight get up to `flush` to arrive, then the client
/// closes; what was not acked is replayed from the spool at the next start.
pub async fn run_sender(
    mut cfg: ClientConfig,
    sink: Arc<SpoolSink>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    flush: Duration,
) {
    let mut window = Window::new(cfg.window, MAX_WINDOW);
    cfg.window = cfg.window.max(MAX_WINDOW);
    let max_points = cfg.max_batch_points as u64;
    let Some(client) = connect(&cfg, &stop).await else {
        return;
    };
    info!(relay = %cfg.addr, "connected to the relay");
    let mut acks = JoinSet::new();
    let mut carry = None;
    loop {
        // Acks recorded since the last batch: their tasks are done.
        while let Some(r) = acks.try_join_next() {
            window.on_ack(r.unwrap_or(AckRoom::Pushback));
        }
        if stop.is_cancelled() {
            break;
        }
        if !window.admits(acks.len()) {
            tokio::select! {
                () = stop.cancelled() => break,
                r = acks.join_next() => {
                    if let Some(r) = r {
                        window.on_ack(r.unwrap_or(AckRoom::Pushback));
                    }
                }
            }
            continue;
        }
        let taken = take_batch(&mut sink.lock(), &mut carry, max_points);
        let recs = match taken {
            Ok(r) if r.is_empty() => {
                window.caught_up();
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = sink.pushed() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "cannot read the spool; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut batch = Batch {
            points: Vec::with_capacity(max_points as usize),
        };
        let mut seqs = Vec::with_capacity(recs.len());
        for rec in &recs {
            match record::decode(&rec.payload) {
                Ok(points) => {
                    seqs.push(rec.seq);
                    add_points(&client, &metrics, &points, &mut batch);
                }
                Err(e) => {
                    // CRC-checked, so only a bug could get here: skip the record.
                    error!(seq = rec.seq, error = %e, "undecodable spool record skipped");
                    let _ = sink.lock().ack(rec.seq);
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
                error!(seqs = ?seqs, error = %e, "batch refused by the client; it stays in the spool");
                continue;
            }
        };
        metrics.points_sent.inc_by(n);
        acks.spawn(record_ack(pending, sink.clone(), metrics.clone(), seqs));
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

/// Adds `points` to `batch` under the client's series ids (an invalid
/// series is counted as dropped).
fn add_points(
    client: &Client,
    metrics: &Metrics,
    points: &[record::OwnedPoint],
    batch: &mut Batch,
) {
    for p in points {
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
}

/// Waits for one batch's ack and records it: counted, and its records
/// acked in the spool. Says whether the relay had room for it.
async fn record_ack(
    pending: PendingAck,
    sink: Arc<SpoolSink>,
    metrics: Arc<Metrics>,
    seqs: Vec<u64>,
) -> AckRoom {
    match pending.await {
        Ok(acked) => {
            let a = acked.ack;
            metrics.batches_acked.inc();
            metrics.points_acked.inc_by(u64::from(a.accepted));
            let mut room = if a.queue_wait_ms > 0 || a.in_flight_wait_ms > 0 {
                AckRoom::Pushback
            } else {
                AckRoom::Room
            };
            for r in &a.rejections {
                if r.reason == RejectReason::Overloaded as i32 {
                    room = AckRoom::Pushback;
                }
                let reason = reason_name(r.reason);
                warn!(%reason, count = r.count, example = %r.message, "the relay rejected points");
                metrics
                    .points_rejected
                    .get_or_create(&Reason { reason })
                    .inc_by(u64::from(r.count));
            }
            let mut spool = sink.lock();
            for seq in seqs {
                if let Err(e) = spool.ack(seq) {
                    error!(seq, error = %e, "cannot record an ack in the spool");
                }
            }
            room
        }
        Err(e) => {
            debug!(seqs = ?seqs, error = %e, "batch not acked; it stays in the spool");
            AckRoom::Pushback
        }
    }
}

#[cfg(test)]
mod tests;
