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
//! still to come get in:
//! - from an address not yet validated: a stateless QUIC Retry. It costs the
//!   relay no state; a real client answers it at once with the token (quinn
//!   does so transparently), a spoofed or fire-and-forget sender never does.
//! - from a validated address (it answered a Retry): the oldest half-open
//!   handshake is dropped to make room. A real handshake finishes within a
//!   round trip or two, so the oldest ones are those that stalled.
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
use std::time::Instant;

use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

/// What to do with a new Initial.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Start the handshake; the ticket holds its place until it ends.
    Start(Ticket),
    /// Answer with a stateless Retry.
    Retry,
}

/// The handshakes in progress, oldest first, and the rate of new ones.
#[derive(Debug)]
pub(crate) struct Handshakes {
    max: usize,
    retry_per_sec: u32,
    gauge: Gauge,
    rate: RateGauges,
    started: Instant,
    state: Mutex<State>,
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

#[derive(Debug, Default)]
struct State {
    next: u64,
    open: BTreeMap<u64, CancellationToken>,
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
}

impl Handshakes {
    /// At most `max` handshakes at once, counted in `gauge`; a Retry for
    /// every unvalidated Initial above `retry_per_sec` new ones a second
    /// (0: always).
    pub(crate) fn new(max: usize, retry_per_sec: u32, gauge: Gauge, rate: RateGauges) -> Arc<Self> {
        rate.validating.set(i64::from(retry_per_sec == 0));
        Arc::new(Self {
            max,
            retry_per_sec,
            gauge,
            rate,
            started: Instant::now(),
            state: Mutex::new(State::default()),
        })
    }

    /// Decides for an Initial from an address validated or not (and that
    /// may or may not still be retried). Returns with the decision whether
    /// the oldest half-open handshake was evicted to make room.
    pub(crate) fn admit(self: &Arc<Self>, validated: bool, may_retry: bool) -> (Decision, bool) {
        self.admit_at(validated, may_retry, self.started.elapsed().as_secs())
    }

    fn admit_at(
        self: &Arc<Self>,
        validated: bool,
        may_retry: bool,
        second: u64,
    ) -> (Decision, bool) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let rate = s.count(second);
        self.rate.per_sec.set(i64::from(s.last_second));
        let flooded = self.retry_per_sec == 0 || rate > self.retry_per_sec;
        self.rate.validating.set(i64::from(flooded));
        if flooded && !validated && may_retry {
            return (Decision::Retry, false);
        }
        let mut evicted = false;
        if s.open.len() >= self.max {
            if !validated && may_retry {
                return (Decision::Retry, false);
            }
            if let Some((_, oldest)) = s.open.pop_first() {
                oldest.cancel();
                self.gauge.dec();
                evicted = true;
            }
        }
        let id = s.next;
        s.next += 1;
        let token = CancellationToken::new();
        s.open.insert(id, token.clone());
        self.gauge.inc();
        let ticket = Ticket {
            id,
            evicted: token,
            set: self.clone(),
        };
        (Decision::Start(ticket), evicted)
    }

    /// Handshakes in progress now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .len()
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
        let mut s = self
            .set
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // An evicted ticket was already removed (and uncounted).
        if s.open.remove(&self.id).is_some() {
            self.set.gauge.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_bound_retries_unvalidated_and_evicts_oldest_for_validated() {
        let g = Gauge::default();
        let h = Handshakes::new(2, 1_000_000, g.clone(), RateGauges::default());
        let (Decision::Start(a), false) = h.admit(false, true) else {
            panic!("room for the first")
        };
        let (Decision::Start(b), false) = h.admit(false, true) else {
            panic!("room for the second")
        };
        assert_eq!(g.get(), 2);
        assert!(matches!(h.admit(false, true), (Decision::Retry, false)));
        // Validated, or no longer retryable: the oldest (a) makes room.
        let (Decision::Start(c), true) = h.admit(true, false) else {
            panic!("a validated address evicts the oldest")
        };
        assert!(a.evicted.is_cancelled());
        assert!(!b.evicted.is_cancelled());
        assert_eq!((h.len(), g.get()), (2, 2));
        drop(a);
        assert_eq!(
            (h.len(), g.get()),
            (2, 2),
            "an evicted ticket is uncounted once"
        );
        drop(b);
        drop(c);
        assert_eq!((h.len(), g.get()), (0, 0));
    }

    #[test]
    fn above_the_rate_every_unvalidated_initial_is_retried() {
        let rate = RateGauges::default();
        let h = Handshakes::new(1000, 3, Gauge::default(), rate.clone());
        let mut tickets = Vec::new();
        // Second 0: three are started, the fourth is past the threshold.
        for _ in 0..3 {
            let (Decision::Start(t), false) = h.admit_at(false, true, 0) else {
                panic!("under the rate: started")
            };
            tickets.push(t);
        }
        assert!(matches!(
            h.admit_at(false, true, 0),
            (Decision::Retry, false)
        ));
        assert_eq!(rate.validating.get(), 1);
        // A validated address (it answered a Retry) or one that may not be
        // retried again is started.
        assert!(matches!(
            h.admit_at(true, false, 0),
            (Decision::Start(_), false)
        ));
        assert!(matches!(
            h.admit_at(false, false, 0),
            (Decision::Start(_), false)
        ));
        // Second 1 judges by second 0's count (6 > 3): still retried.
        assert!(matches!(
            h.admit_at(false, true, 1),
            (Decision::Retry, false)
        ));
        assert_eq!(rate.per_sec.get(), 6);
        // A quiet second later: started again.
        assert!(matches!(
            h.admit_at(false, true, 3),
            (Decision::Start(_), false)
        ));
        assert_eq!((rate.per_sec.get(), rate.validating.get()), (0, 0));
    }

    #[test]
    fn threshold_zero_always_retries_unvalidated_initials() {
        let rate = RateGauges::default();
        let h = Handshakes::new(1000, 0, Gauge::default(), rate.clone());
        assert_eq!(rate.validating.get(), 1);
        assert!(matches!(
            h.admit_at(false, true, 0),
            (Decision::Retry, false)
        ));
        assert!(matches!(
            h.admit_at(true, false, 0),
            (Decision::Start(_), false)
        ));
    }
}
