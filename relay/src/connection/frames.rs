//! Reading a stream's frames within the relay's frame-buffer bounds.
//!
//! A frame's bytes are held against three budgets from the moment its
//! length prefix is read until its batch has been processed: the
//! connection's (`limits.max_frame_buffer_bytes_per_connection`), the
//! node's, all its connections together (`..._per_node`), and the relay's
//! (`..._total`). A stream whose next frame does not fit waits before
//! reading the payload, so the bytes stay with the agent (QUIC flow
//! control) instead of in the relay's memory. Taking the connection's share
//! first, then the node's, means one connection never holds more than its
//! bound of its node's, and one node never more than its share of the
//! relay's, whatever its number of connections: the rest stays for the
//! other nodes.
//!
//! Once it has room, the payload must keep a minimum rate: within every
//! `limits.frame_read_timeout_secs` (the window, `W`) it must bring
//! `limits.min_frame_bytes_per_sec × W` bytes (the quota), or the rest of
//! the frame if that is less. A window starts when the frame gets room and
//! again each time a quota is met; bytes beyond a quota earn nothing for
//! the next window, so a sender cannot send most of a frame at once and
//! then hold its room by trickling the rest. A frame that misses a quota has
//! its stream ended with `FRAME_TIMEOUT` (STOP_SENDING, the acks before it,
//! FIN): a sender that stalls or trickles mid-frame holds room that others
//! wait for for at most `W`, while a slow but steady link takes as long as
//! a large frame needs at that rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use horizon_shared::codec::{self, FrameError, HEADER_LEN};
use horizon_shared::proto::AgentFrame;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::FrameRate;

/// A frame's bytes, held against the budgets until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    _connection: OwnedSemaphorePermit,
    _node: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
    gauge: Gauge,
    bytes: i64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

/// The budgets a stream's frames are read within.
#[derive(Debug, Clone)]
pub(crate) struct FrameBudget {
    /// This connection's streams together.
    pub(crate) connection: Arc<Semaphore>,
    /// The node's connections together.
    pub(crate) node: Arc<Semaphore>,
    /// Every connection together.
    pub(crate) total: Arc<Semaphore>,
    /// Bytes held now, all connections (`horizon_relay_frame_buffer_bytes`).
    pub(crate) gauge: Gauge,
}

impl FrameBudget {
    /// Takes `bytes` from the connection's budget, then the node's, then
    /// the relay's, waiting while any is short; returns the hold and the
    /// time waited: zero when all had room at once, so that only a frame
    /// that really waited is counted in
    /// `throttled_batches_total{limit="frame_buffer"}`.
    async fn hold(&self, bytes: usize) -> (Held, Duration) {
        // Validated: the budgets are under 4 GiB and at least one frame.
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        let (connection, waited_connection) = take(&self.connection, n).await;
        let (node, waited_node) = take(&self.node, n).await;
        let (total, waited_total) = take(&self.total, n).await;
        let held = i64::from(n);
        self.gauge.inc_by(held);
        let hold = Held {
            _connection: connection,
            _node: node,
            _total: total,
            gauge: self.gauge.clone(),
            bytes: held,
        };
        (hold, waited_connection + waited_node + waited_total)
    }
}

/// Takes `n` bytes of `budget` at once if it has room (no wait), else waits
/// for them and says how long.
async fn take(budget: &Arc<Semaphore>, n: u32) -> (OwnedSemaphorePermit, Duration) {
    if let Ok(p) = budget.clone().try_acquire_many_owned(n) {
        return (p, Duration::ZERO);
    }
    let start = Instant::now();
    let p = budget
        .clone()
        .acquire_many_owned(n)
        .await
        .expect("frame budgets are never closed");
    (p, start.elapsed())
}

/// The minimum rate of one frame's payload: a quota of bytes per window.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// `min_bytes_per_sec × window`.
    quota: usize,
    window: Duration,
    /// When the current window started.
    started: tokio::time::Instant,
    /// Bytes received in the current window.
    got: usize,
}

impl Pace {
    fn new(rate: FrameRate, now: tokio::time::Instant) -> Self {
        let window_ms = usize::try_from(rate.window.as_millis()).unwrap_or(usize::MAX);
        let quota = rate.min_bytes_per_sec.saturating_mul(window_ms) / 1000;
        Self {
            quota: quota.max(1),
            window: rate.window,
            started: now,
            got: 0,
        }
    }

    /// When the current window's quota (or the rest of the frame) must
    /// have arrived.
    fn deadline(&self) -> tokio::time::Instant {
        self.started + self.window
    }

    /// `n` bytes arrived at `now`: a met quota starts the next window,
    /// with nothing carried over.
    fn record(&mut self, n: usize, now: tokio::time::Instant) {
        self.got += n;
        if self.got >= self.quota {
            self.started = now;
            self.got = 0;
        }
    }
}

/// A stream's frames, read one at a time within a [`FrameBudget`].
///
/// [`next`](Self::next) is cancel-safe: a frame read in part is kept and
/// finished by the next call.
#[derive(Debug)]
pub(crate) struct Frames {
    recv: quinn::RecvStream,
    max_frame_bytes: usize,
    rate: FrameRate,
    budget: FrameBudget,
    header: [u8; HEADER_LEN],
    header_read: usize,
    payload: Option<Payload>,
}

/// The payload of the frame being read.
#[derive(Debug)]
struct Payload {
    bytes: Vec<u8>,
    read: usize,
    /// When it got room.
    room_at: tokio::time::Instant,
    /// The minimum rate it must keep from then on.
    pace: Pace,
    held: Held,
    waited: Duration,
}

/// One frame read off a stream.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The decoded frame.
    pub(crate) frame: AgentFrame,
    /// Its bytes, held until the batch has been processed.
    pub(crate) held: Held,
    /// Time the stream waited for room in the budgets before reading it.
    pub(crate) waited: Duration,
}

impl Frames {
    pub(crate) fn new(
        recv: quinn::RecvStream,
        max_frame_bytes: usize,
        rate: FrameRate,
        budget: FrameBudget,
    ) -> Self {
        Self {
            recv,
            max_frame_bytes,
            rate,
            budget,
            header: [0; HEADER_LEN],
            header_read: 0,
            payload: None,
        }
    }

    /// Reads the next frame; `Ok(None)` when the stream ended cleanly at a
    /// frame boundary. A prefix over `limits.max_frame_bytes` (or zero) is
    /// refused before any of the payload is read, and the payload is read
    /// only once its bytes fit in the budgets.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        while self.header_read < HEADER_LEN {
            match self.recv.read(&mut self.header[self.header_read..]).await {
                Ok(Some(n)) => self.header_read += n,
                Ok(None) if self.header_read == 0 => return Ok(None),
                Ok(None) => {
                    return Err(FrameError::Truncated {
                        buffered: self.header_read,
                        expected: HEADER_LEN,
                    });
                }
                Err(e) => return Err(FrameError::Io(e.into())),
            }
        }
        if self.payload.is_none() {
            codec::check(&self.header, self.max_frame_bytes)?;
            let len = u32::from_be_bytes(self.header) as usize;
            let (held, waited) = self.budget.hold(len).await;
            self.payload = Some(Payload {
                bytes: vec![0; len],
                read: 0,
                room_at: tokio::time::Instant::now(),
                pace: Pace::new(self.rate, tokio::time::Instant::now()),
                held,
                waited,
            });
        }
        let p = self.payload.as_mut().expect("set above");
        while p.read < p.bytes.len() {
            let read =
                tokio::time::timeout_at(p.pace.deadline(), self.recv.read(&mut p.bytes[p.read..]));
            let Ok(read) = read.await else {
                return Err(FrameError::Stalled {
                    buffered: HEADER_LEN + p.read,
                    expected: HEADER_LEN + p.bytes.len(),
                    after: p.room_at.elapsed(),
                });
            };
            match read {
                Ok(Some(n)) => {
                    p.read += n;
                    p.pace.record(n, tokio::time::Instant::now());
                }
                Ok(None) => {
                    return Err(FrameError::Truncated {
                        buffered: HEADER_LEN + p.read,
                        expected: HEADER_LEN + p.bytes.len(),
                    });
                }
                Err(e) => return Err(FrameError::Io(e.into())),
            }
        }
        let Payload {
            bytes,
            held,
            waited,
            ..
        } = self.payload.take().expect("set above");
        self.header_read = 0;
        let frame = codec::decode_payload::<AgentFrame>(&bytes)?;
        Ok(Some(Frame {
            frame,
            held,
            waited,
        }))
    }

    /// The stream's receiving half.
    pub(crate) fn recv_mut(&mut self) -> &mut quinn::RecvStream {
        &mut self.recv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(connection: usize, total: usize) -> FrameBudget {
        FrameBudget {
            connection: Arc::new(Semaphore::new(connection)),
            node: Arc::new(Semaphore::new(total)),
            total: Arc::new(Semaphore::new(total)),
            gauge: Gauge::default(),
        }
    }

    #[tokio::test]
    async fn holds_count_against_both_budgets_until_dropped() {
        let b = budget(100, 150);
        let (first, waited) = b.hold(60).await;
        assert_eq!(waited, Duration::ZERO, "room at once: no wait to count");
        assert_eq!(b.gauge.get(), 60);
        assert_eq!(b.connection.available_permits(), 40);
        assert_eq!(b.total.available_permits(), 90);
        // A second connection (of another node) shares only the total.
        let other = FrameBudget {
            connection: Arc::new(Semaphore::new(100)),
            node: Arc::new(Semaphore::new(150)),
            ..b.clone()
        };
        let (second, waited) = other.hold(90).await;
        assert_eq!(waited, Duration::ZERO);
        assert_eq!(b.total.available_permits(), 0);
        assert_eq!(b.gauge.get(), 150);
        drop((first, second));
        assert_eq!(b.gauge.get(), 0);
        assert_eq!(b.total.available_permits(), 150);
        assert_eq!(b.connection.available_permits(), 100);
    }

    #[tokio::test]
    async fn a_frame_that_does_not_fit_waits_for_room() {
        let b = budget(100, 100);
        let (first, _) = b.hold(70).await;
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.hold(50).await }
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "50 more bytes do not fit beside 70");
        assert_eq!(b.gauge.get(), 70);
        drop(first);
        let (second, waited) = waiting.await.unwrap();
        assert!(!waited.is_zero());
        assert_eq!(b.gauge.get(), 50);
        drop(second);
        assert_eq!(b.gauge.get(), 0);
    }

    #[tokio::test]
    async fn a_node_holds_at_most_its_share_whatever_its_connections() {
        // Two connections of one node, each with room for 100, share the
        // node's 120; the relay's 300 keeps 180 for the other nodes.
        let node = Arc::new(Semaphore::new(120));
        let total = Arc::new(Semaphore::new(300));
        let conn = |node: &Arc<Semaphore>| FrameBudget {
            connection: Arc::new(Semaphore::new(100)),
            node: node.clone(),
            total: total.clone(),
            gauge: Gauge::default(),
        };
        let (a, b) = (conn(&node), conn(&node));
        let (first, _) = a.hold(100).await;
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.hold(50).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "50 more do not fit in the node's 120"
        );
        assert_eq!(total.available_permits(), 200);
        // Another node reads at once.
        let other = conn(&Arc::new(Semaphore::new(120)));
        let (third, waited) = other.hold(100).await;
        assert_eq!(waited, Duration::ZERO);
        drop(first);
        let (second, waited) = waiting.await.unwrap();
        assert!(!waited.is_zero());
        assert_eq!(node.available_permits(), 70);
        drop((second, third));
        assert_eq!(total.available_permits(), 300);
    }

    #[test]
    fn each_window_must_bring_its_quota_and_earns_nothing_for_the_next() {
        let rate = FrameRate {
            min_bytes_per_sec: 1000,
            window: Duration::from_secs(5),
        };
        let t0 = tokio::time::Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut p = Pace::new(rate, t0);
        assert_eq!(p.quota, 5000);
        assert_eq!(p.deadline(), at(5000));
        // Short of the quota: the deadline stands.
        p.record(4999, at(1000));
        assert_eq!(p.deadline(), at(5000));
        // Met: the next window starts now.
        p.record(1, at(4000));
        assert_eq!(p.deadline(), at(9000));
        // A burst far over the quota buys one window, no more.
        p.record(1_000_000, at(4100));
        assert_eq!(p.deadline(), at(9100));
        p.record(10, at(8000));
        assert_eq!(p.deadline(), at(9100), "a trickle after a burst is cut");
    }
}
