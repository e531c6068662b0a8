//! Admission of QUIC handshakes, kept apart from established connections.
//!
//! A handshake in progress costs the relay state (quinn's connection, TLS
//! state) but proves nothing: anyone can send an Initial, from any address.
//! So handshakes never hold one of the `server.max_connections` slots (those
//! are taken once the handshake and the node identity check succeed), and
//! they have their own bound, `server.max_handshakes_in_progress`, and their
//! own timeout, `server.handshake_timeout_secs`.
//!
//! When the bound is full, a new Initial is answered so that the agents
//! still to come get in, and those already handshaking finish:
//! - from an address not yet validated: a stateless QUIC Retry. It costs the
//!   relay no state; a real client answers it at once with the token (quinn
//!   does so transparently), a spoofed or fire-and-forget sender never does.
//! - from a validated address (it answered a Retry): if the oldest
//!   handshake in progress has run for [`STALLED_AFTER`], it is taken for
//!   stalled and dropped to make room. Otherwise the Initial waits in a
//!   queue (first come, first served; [`QUEUE_PER_PLACE`] per place of the
//!   bound) for the next place to free, for at most [`MAX_QUEUE_WAIT`]; quinn
//!   keeps the client's resent Initials meanwhile. Past the wait, or with
//!   the queue full, the Initial is dropped unanswered, and the client's next
//!   resend comes back validated.
//!
//! Handshakes are never dropped for being merely the oldest: in a connect
//! storm (thousands of agents after a relay restart) the places turn over
//! by the hundred a second, and dropping the oldest for each newcomer ends
//! handshakes the relay has already paid for, just before they finish, so
//! that fewer finish the more arrive.
//!
//! Before the bound is full, a flood of new connection attempts still costs
//! a TLS key exchange each. So above `server.handshake_retry_per_sec` new
//! Initials a second (counted over the last whole second, or the current
//! one once it is past the threshold), every Initial from an address not
//! yet validated gets a Retry too; with 0, every one does. A client that
//! answers costs one more round trip; a flood of Initials that never
//! answer costs the relay a Retry packet each and no handshake.
//!
//! [`Decision`] is the one place that policy lives.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A handshake running this long, with the bound full and an address
/// validated waiting, is taken for stalled: a real one takes a round trip
/// or two, and even on a relay short of CPU in a connect storm, seconds
/// only when it is about to be abandoned (the reference client gives up
/// on a handshake after 4 s, the Retry and the queue included).
pub(crate) const STALLED_AFTER: Duration = Duration::from_secs(3);

/// The longest an Initial waits in the queue: the reference client gives up
/// on a handshake after 4 s, and needs a round trip, the Retry's, before
/// and the handshake after.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(1);

/// Queue places per place of the handshake bound.
pub(crate) const QUEUE_PER_PLACE: usize = 4;

/// What to do with a new Initial.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Start the handshake; the ticket holds its place until it ends.
    Start(Ticket),
    /// Wait for a place (the bound is full, the address validated).
    Wait(Waiting),
    /// Answer with a stateless Retry.
    Retry,
    /// Drop the Initial unanswered: the bound and the queue are full.
    Ignore,
}

/// The handshakes in progress, oldest first, the queue for their places,
/// and the rate of new ones.
#[derive(Debug)]
pub(crate) struct Handshakes {
    max: usize,
    max_queued: usize,
    retry_per_sec: u32,
    gauges: Gauges,
    started: Instant,
    state: Mutex<State>,
}

/// The gauges the handshake admission keeps.
#[derive(Debug, Default, Clone)]
pub(crate) struct Gauges {
    /// Handshakes in progress.
    pub(crate) in_progress: Gauge,
    /// Initials waiting for a place.
    pub(crate) queued: Gauge,
    /// The handshake rate and the Retry it switches on.
    pub(crate) rate: RateGauges,
}

/// Gauges of the handshake rate and of the Retry it switches on.
#[derive(Debug, Default, Clone)]
pub(crate) struct RateGauges {
    /// Initials received in the last whole second.
    pub(crate) per_sec: Gauge,
    /// 1 while every unvalidated Initial gets a Retry (rate above the
    /// threshold, or threshold 0), else 0.
    pub(crate) validating: Gauge,
}

#[derive(Debug)]
struct Open {
    since: Instant,
    evict: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    open: BTreeMap<u64, Open>,
    queue: BTreeMap<u64, oneshot::Sender<Ticket>>,
    /// The second (since `started`) that `this_second` counts.
    second: u64,
    this_second: u32,
    last_second: u32,
}

impl State {
    /// Counts an Initial at `second`; returns the rate to judge by: the
    /// last whole second's count, or this one's once it is higher.
    fn count(&mut self, second: u64) -> u32 {
        if second != self.second {
            self.last_second = if second == self.second + 1 {
                self.this_second
            } else {
                0
            };
            self.second = second;
            self.this_second = 0;
        }
        self.this_second = self.this_second.saturating_add(1);
        self.last_second.max(self.this_second)
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

impl Handshakes {
    /// At most `max` handshakes at once and `max` × [`QUEUE_PER_PLACE`]
    /// Initials waiting, counted in `gauges`; a Retry for every unvalidated
    /// Initial above `retry_per_sec` new ones a second (0: always).
    pub(crate) fn new(max: usize, retry_per_sec: u32, gauges: Gauges) -> Arc<Self> {
        gauges.rate.validating.set(i64::from(retry_per_sec == 0));
        Arc::new(Self {
            max,
            max_queued: max.saturating_mul(QUEUE_PER_PLACE),
            retry_per_sec,
            gauges,
            started: Instant::now(),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides for an Initial from an address validated or not (and that
    /// may or may not still be retried). Returns with the decision whether
    /// a stalled handshake was evicted to make room.
    pub(crate) fn admit(self: &Arc<Self>, validated: bool, may_retry: bool) -> (Decision, bool) {
        self.admit_at(validated, may_retry, Instant::now())
    }

    fn admit_at(
        self: &Arc<Self>,
        validated: bool,
        may_retry: bool,
        now: Instant,
    ) -> (Decision, bool) {
        let mut s = self.lock();
        let rate = s.count(now.saturating_duration_since(self.started).as_secs());
        let rate_gauges = &self.gauges.rate;
        rate_gauges.per_sec.set(i64::from(s.last_second));
        let flooded = self.retry_per_sec == 0 || rate > self.retry_per_sec;
        rate_gauges.validating.set(i64::from(flooded));
        if flooded && !validated && may_retry {
            return (Decision::Retry, false);
        }
        if s.open.len() < self.max {
            return (Decision::Start(self.start(&mut s, now)), false);
        }
        if !validated && may_retry {
            return (Decision::Retry, false);
        }
        let stalled = s
            .open
            .first_key_value()
            .is_some_and(|(_, o)| now.saturating_duration_since(o.since) >= STALLED_AFTER);
        if stalled && let Some((_, oldest)) = s.open.pop_first() {
            oldest.evict.cancel();
            self.gauges.in_progress.dec();
            return (Decision::Start(self.start(&mut s, now)), true);
        }
        if s.queue.len() >= self.max_queued {
            return (Decision::Ignore, false);
        }
        let id = s.id();
        let (tx, rx) = oneshot::channel();
        s.queue.insert(id, tx);
        self.gauges.queued.inc();
        let waiting = Waiting {
            id,
            ticket: rx,
            set: self.clone(),
        };
        (Decision::Wait(waiting), false)
    }

    /// Takes a place in the bound (the caller checked there is one).
    fn start(self: &Arc<Self>, s: &mut State, now: Instant) -> Ticket {
        let id = s.id();
        let evict = CancellationToken::new();
        s.open.insert(
            id,
            Open {
                since: now,
                evict: evict.clone(),
            },
        );
        self.gauges.in_progress.inc();
        Ticket {
            id,
            evicted: evict,
            set: self.clone(),
        }
    }

    /// Gives a handshake's place back: to the first Initial still waiting,
    /// else to the bound.
    fn release(self: &Arc<Self>, id: u64) {
        let (tx, ticket) = {
            let mut s = self.lock();
            // An evicted ticket was already removed (and uncounted).
            if s.open.remove(&id).is_none() {
                return;
            }
            self.gauges.in_progress.dec();
            let Some((_, tx)) = s.queue.pop_first() else {
                return;
            };
            self.gauges.queued.dec();
            (tx, self.start(&mut s, Instant::now()))
        };
        // Sent with the lock released: a waiter that gave up in between
        // hands the ticket back, and dropping it passes the place on.
        drop(tx.send(ticket));
    }

    /// Handshakes in progress and Initials waiting now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        let s = self.lock();
        (s.open.len(), s.queue.len())
    }
}

/// A handshake's place in the bound, given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    id: u64,
    evicted: CancellationToken,
    set: Arc<Handshakes>,
}

impl Ticket {
    /// Resolves if this handshake is evicted to make room for a newer one.
    pub(crate) async fn evicted(&self) {
        self.evicted.cancelled().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.set.release(self.id);
    }
}

/// An Initial's place in the queue; leaves it when dropped.
#[derive(Debug)]
pub(crate) struct Waiting {
    id: u64,
    ticket: oneshot::Receiver<Ticket>,
    set: Arc<Handshakes>,
}

impl Waiting {
    /// Resolves with a place in the bound once one is free, or with
    /// nothing after [`MAX_QUEUE_WAIT`].
    pub(crate) async fn ticket(&mut self) -> Option<Ticket> {
        tokio::time::timeout(MAX_QUEUE_WAIT, &mut self.ticket)
            .await
            .ok()?
            .ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.set.lock().queue.remove(&self.id).is_some() {
            self.set.gauges.queued.dec();
        }
    }
}

#[cfg(test)]
mod tests;
