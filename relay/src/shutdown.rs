//! The relay's shutdown phases and their deadlines, for the coordinator in
//! [`horizon_shared::shutdown`].
//!
//! Components register with the [`Shutdown`] coordinator by name, each in
//! the [`Phase`] in which it must stop. [`Shutdown::run`] then runs the
//! phases in their documented order (stop accepting → drain connections →
//! flush sinks → exit): it fires the phase's signal, waits for the phase's
//! components up to the phase's deadline, and logs by name whatever is still
//! pending when the deadline passes. So the relay exits within the sum of
//! the deadlines ([`Deadlines::total`]).

use std::time::Duration;

use horizon_shared::shutdown::Phases;

use crate::config::Settings;

/// The relay's shutdown coordinator.
pub type Shutdown = horizon_shared::shutdown::Shutdown<Phase>;
/// What a relay shutdown left unfinished.
pub type Report = horizon_shared::shutdown::Report<Phase>;
pub use horizon_shared::shutdown::Registration;

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

impl Phases for Phase {
    const ALL: &'static [Self] = &[Phase::Accept, Phase::Connections, Phase::Sinks, Phase::Exit];

    fn as_str(self) -> &'static str {
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
            connections: settings.server.drain_grace + Duration::from_secs(1),
            sinks: settings.server.drain_flush,
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

#[cfg(test)]
mod tests;
