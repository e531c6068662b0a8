//! One shutdown path for a whole process (the relay's and the agent's).
//!
//! Components register with the [`Shutdown`] coordinator by name, each in
//! the phase in which it must stop; the process names its phases, in order,
//! with a [`Phases`] enum (the relay: stop accepting → drain connections →
//! flush sinks → exit; the agent: stop sources → flush acks → sync the spool
//! → exit). [`Shutdown::run`] then runs the phases in that order: it fires
//! the phase's signal, waits for the phase's components up to the phase's
//! deadline, and logs by name whatever is still pending when the deadline
//! passes. So the process exits within the sum of the deadlines.
//!
//! Modelled on influxdb 3's `influxdb3_shutdown`: a component holds a
//! [`Registration`] and is done when it drops it (or when its task, started
//! with [`Shutdown::spawn`], ends).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The phases of one process's shutdown.
pub trait Phases: Copy + Eq + Debug + Send + Sync + 'static {
    /// Every phase, in the order they run.
    const ALL: &'static [Self];

    /// The phase's name in logs.
    fn as_str(self) -> &'static str;

    /// The phase's position in [`ALL`](Self::ALL).
    fn index(self) -> usize;
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

#[derive(Debug)]
struct Inner {
    /// One per phase, in the order of [`Phases::ALL`].
    phases: Box<[PhaseState]>,
    next_id: AtomicU64,
}

/// The shutdown coordinator (cheap to clone; clones share the state).
pub struct Shutdown<P> {
    inner: Arc<Inner>,
    _phases: PhantomData<fn() -> P>,
}

impl<P> Clone for Shutdown<P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _phases: PhantomData,
        }
    }
}

impl<P> Debug for Shutdown<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<P: Phases> Default for Shutdown<P> {
    fn default() -> Self {
        Self::new()
    }
}

/// A registered component; it is done when this is dropped.
#[derive(Debug)]
#[must_use = "the component counts as done as soon as its registration is dropped"]
pub struct Registration {
    inner: Arc<Inner>,
    phase: usize,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let state = &self.inner.phases[self.phase];
        state.pending().remove(&self.id);
        state.changed.notify_waiters();
    }
}

/// What a shutdown left unfinished: the names of the components still
/// pending at their phase's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<P> {
    /// Per phase that overran, the components it gave up on.
    pub overran: Vec<(P, Vec<String>)>,
}

impl<P> Default for Report<P> {
    fn default() -> Self {
        Self {
            overran: Vec::new(),
        }
    }
}

impl<P> Report<P> {
    /// Whether every component finished in time.
    pub fn clean(&self) -> bool {
        self.overran.is_empty()
    }
}

impl<P: Phases> Shutdown<P> {
    /// A coordinator with no components.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                phases: P::ALL.iter().map(|_| PhaseState::default()).collect(),
                next_id: AtomicU64::new(0),
            }),
            _phases: PhantomData,
        }
    }

    fn state(&self, phase: P) -> &PhaseState {
        &self.inner.phases[phase.index()]
    }

    /// Fires when `phase` starts (and stays fired).
    pub fn signal(&self, phase: P) -> CancellationToken {
        self.state(phase).signal.clone()
    }

    /// Registers a component that must be done by the end of `phase`.
    pub fn register(&self, phase: P, name: impl Into<String>) -> Registration {
        self.insert(phase, name.into(), None)
    }

    fn insert(&self, phase: P, name: String, abort: Option<AbortHandle>) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.state(phase)
            .pending()
            .insert(id, Component { name, abort });
        Registration {
            inner: self.inner.clone(),
            phase: phase.index(),
            id,
        }
    }

    /// Spawns a task that must end by the end of `phase`; it should watch
    /// [`signal`](Self::signal) of that phase (or an earlier one). A task
    /// still running at the phase's deadline is aborted.
    pub fn spawn<F>(&self, phase: P, name: impl Into<String>, task: F)
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

    /// Runs every phase in order, each up to its deadline (`deadline_of`),
    /// and reports what did not finish in time (also logged, by name).
    pub async fn run(&self, deadline_of: impl Fn(P) -> Duration) -> Report<P> {
        let mut report = Report::default();
        for &phase in P::ALL {
            let deadline = deadline_of(phase);
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

    async fn run_phase(&self, phase: P, deadline: Duration) -> Vec<String> {
        let state = self.state(phase);
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
