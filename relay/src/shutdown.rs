//! One shutdown path for the whole relay.
//!
//! Components register with the [`Shutdown`] coordinator by name, each in
//! the [`Phase`] in which it must stop. [`Shutdown::run`] then runs the
//! phases in their documented order (stop accepting → drain connections →
//! flush sinks → exit): it fires the phase's signal, waits for the phase's
//! components up to the phase's deadline, and logs by name whatever is still
//! pending when the deadline passes. So the relay exits within the sum of
//! the deadlines ([`Deadlines::total`]).
//!
//! Modelled on influxdb 3's `influxdb3_shutdown`: a component holds a
//! [`Registration`] and is done when it drops it (or when its task, started
//! with [`Shutdown::spawn`], ends).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;

/// The phases of a shutdown, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Stop accepting: `/readyz` fails, the accept loop ends, background
    /// sweeps stop.
    Accept,
    /// Drain connections: streams get `GoAway`, in-flight batches are
    /// acked, streams still open after `server.drain_grace_secs` are reset.
    Connections,
    /// Flush sinks: the micro-batch and the InfluxDB buffer are written.
    Sinks,
    /// Exit: the QUIC endpoint closes and the HTTP endpoint stops.
    Exit,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 4] = [Phase::Accept, Phase::Connections, Phase::Sinks, Phase::Exit];

    /// The phase's name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Accept => "stop accepting",
            Phase::Connections => "drain connections",
            Phase::Sinks => "flush sinks",
            Phase::Exit => "exit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How long each phase may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Stop accepting (the accept loop reacts at once).
    pub accept: Duration,
    /// Drain connections.
    pub connections: Duration,
    /// Flush sinks.
    pub sinks: Duration,
    /// Close the endpoint and the HTTP server.
    pub exit: Duration,
}

impl Deadlines {
    /// The relay's deadlines: `server.drain_grace_secs` plus 1 s for the
    /// streams' resets to go out, `server.drain_flush_secs` for the sinks,
    /// and 1 s each to stop accepting and to close. The total is
    /// `drain_grace + drain_flush + 3 s`.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            accept: Duration::from_secs(1),
            connections: settings.drain_grace + Duration::from_secs(1),
            sinks: settings.drain_flush,
            exit: Duration::from_secs(1),
        }
    }

    /// The deadline of one phase.
    pub fn of(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Accept => self.accept,
            Phase::Connections => self.connections,
            Phase::Sinks => self.sinks,
            Phase::Exit => self.exit,
        }
    }

    /// The longest a whole shutdown can take.
    pub fn total(&self) -> Duration {
        Phase::ALL.iter().map(|p| self.of(*p)).sum()
    }
}

#[derive(Debug, Default)]
struct Component {
    name: String,
    /// Set for tasks started by [`Shutdown::spawn`]: aborted at the deadline.
    abort: Option<AbortHandle>,
}

#[derive(Debug, Default)]
struct PhaseState {
    signal: CancellationToken,
    pending: Mutex<BTreeMap<u64, Component>>,
    changed: Notify,
}

impl PhaseState {
    fn pending(&self) -> MutexGuard<'_, BTreeMap<u64, Component>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct Inner {
    phases: [PhaseState; 4],
    next_id: AtomicU64,
}

/// The shutdown coordinator (cheap to clone; clones share the state).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

/// A registered component; it is done when this is dropped.
#[derive(Debug)]
#[must_use = "the component counts as done as soon as its registration is dropped"]
pub struct Registration {
    inner: Arc<Inner>,
    phase: Phase,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let state = &self.inner.phases[self.phase.index()];
        state.pending().remove(&self.id);
        state.changed.notify_waiters();
    }
}

/// What a shutdown left unfinished: the names of the components still
/// pending at their phase's deadline.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Per phase that overran, the components it gave up on.
    pub overran: Vec<(Phase, Vec<String>)>,
}

impl Report {
    /// Whether every component finished in time.
    pub fn clean(&self) -> bool {
        self.overran.is_empty()
    }
}

impl Shutdown {
    /// A coordinator with no components.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires when `phase` starts (and stays fired).
    pub fn signal(&self, phase: Phase) -> CancellationToken {
        self.inner.phases[phase.index()].signal.clone()
    }

    /// Registers a component that must be done by the end of `phase`.
    pub fn register(&self, phase: Phase, name: impl Into<String>) -> Registration {
        self.insert(phase, name.into(), None)
    }

    fn insert(&self, phase: Phase, name: String, abort: Option<AbortHandle>) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.phases[phase.index()]
            .pending()
            .insert(id, Component { name, abort });
        Registration {
            inner: self.inner.clone(),
            phase,
            id,
        }
    }

    /// Spawns a task that must end by the end of `phase`; it should watch
    /// [`signal`](Self::signal) of that phase (or an earlier one). A task
    /// still running at the phase's deadline is aborted.
    pub fn spawn<F>(&self, phase: Phase, name: impl Into<String>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Registration>();
        let handle = tokio::spawn(async move {
            // Held for the task's life, dropped when it ends or is aborted.
            let _registration = rx.await;
            task.await;
        });
        let registration = self.insert(phase, name.into(), Some(handle.abort_handle()));
        // The task holds its registration; if it already ended, this drops it.
        let _ = tx.send(registration);
    }

    /// Runs every phase in order, each up to its deadline, and reports what
    /// did not finish in time (also logged, by name).
    pub async fn run(&self, deadlines: &Deadlines) -> Report {
        let mut report = Report::default();
        for phase in Phase::ALL {
            let deadline = deadlines.of(phase);
            let pending = self.run_phase(phase, deadline).await;
            if !pending.is_empty() {
                warn!(
                    phase = phase.as_str(),
                    ?deadline,
                    count = pending.len(),
                    pending = %summary(&pending),
                    "shutdown phase overran its deadline; moving on without these"
                );
                report.overran.push((phase, pending));
            }
        }
        report
    }

    async fn run_phase(&self, phase: Phase, deadline: Duration) -> Vec<String> {
        let state = &self.inner.phases[phase.index()];
        let until = tokio::time::Instant::now() + deadline;
        info!(phase = phase.as_str(), ?deadline, "shutdown phase");
        state.signal.cancel();
        loop {
            let changed = state.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if state.pending().is_empty() {
                return Vec::new();
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                let pending = state.pending();
                for c in pending.values() {
                    if let Some(abort) = &c.abort {
                        abort.abort();
                    }
                }
                return pending.values().map(|c| c.name.clone()).collect();
            }
        }
    }
}

/// The first names, and how many more (a drain can leave thousands of
/// connections).
fn summary(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests;
