//! A connection's in-flight slots (`server.max_in_flight_batches_per_connection`):
//! taken before a batch is read, held until its ack is written, and the
//! gauges that count them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Throttle;
use crate::state::Shared;

/// Decrements a gauge when dropped.
pub(super) struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub(super) fn new(g: &Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One of a connection's in-flight slots, held from a batch's admission
/// until its ack is written.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    _gauge: GaugeGuard,
}

/// A slot reserved before the stream's next frame is read, so that a
/// decoded frame never waits for one.
pub(super) struct Reserved {
    permit: OwnedSemaphorePermit,
    waited: Duration,
}

impl Reserved {
    /// Waits for a slot while the connection is at its limit (`None` only
    /// if the semaphore was closed, which the relay never does).
    pub(super) async fn take(slots: &Arc<Semaphore>) -> Option<Self> {
        let (permit, waited) = match slots.clone().try_acquire_owned() {
            Ok(p) => (p, Duration::ZERO),
            Err(_) => {
                let t = Instant::now();
                let p = slots.clone().acquire_owned().await.ok()?;
                (p, t.elapsed())
            }
        };
        Some(Self { permit, waited })
    }

    /// Admits a batch that has been read into this slot; returns the slot
    /// and the time waited for it.
    pub(super) fn admit(self, slots: &Semaphore, shared: &Shared) -> (Slot, Duration) {
        let limit = shared.settings.server.max_in_flight_per_connection;
        let held = limit.saturating_sub(slots.available_permits());
        shared
            .metrics
            .flow
            .connection_in_flight
            .observe(held as f64);
        if !self.waited.is_zero() {
            shared
                .metrics
                .flow
                .throttled(Throttle::InFlight, self.waited);
        }
        let slot = Slot {
            _permit: self.permit,
            _gauge: GaugeGuard::new(&shared.metrics.flow.in_flight_batches),
        };
        (slot, self.waited)
    }
}
