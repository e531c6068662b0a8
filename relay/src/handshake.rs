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
//! [`Decision`] is the one place that policy lives, so that further triggers
//! (such as a Retry for every Initial above a handshake rate) fit in here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

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

/// The handshakes in progress, oldest first.
#[derive(Debug)]
pub(crate) struct Handshakes {
    max: usize,
    gauge: Gauge,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    open: BTreeMap<u64, CancellationToken>,
}

impl Handshakes {
    /// At most `max` handshakes at once, counted in `gauge`.
    pub(crate) fn new(max: usize, gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            max,
            gauge,
            state: Mutex::new(State::default()),
        })
    }

    /// Decides for an Initial from an address validated or not (and that
    /// may or may not still be retried). Returns with the decision whether
    /// the oldest half-open handshake was evicted to make room.
    pub(crate) fn admit(self: &Arc<Self>, validated: bool, may_retry: bool) -> (Decision, bool) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
        let h = Handshakes::new(2, g.clone());
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
}
