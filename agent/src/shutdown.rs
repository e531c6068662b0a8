//! The agent's shutdown phases and their deadlines, for the coordinator in
//! [`horizon_shared::shutdown`]: the sources stop first, so nothing is
//! spooled after the sender stops; the sender then gets a bounded time for
//! the acks of the batches in flight; then the spool is synced; last, the
//! metrics endpoint closes. What is still pending at a phase's deadline is
//! logged by name and left behind (unacked batches stay in the spool).

use std::time::Duration;

use horizon_shared::shutdown::Phases;

use crate::config::Settings;

/// The agent's shutdown coordinator.
pub type Shutdown = horizon_shared::shutdown::Shutdown<Phase>;
/// What an agent shutdown left unfinished.
pub type Report = horizon_shared::shutdown::Report<Phase>;

/// The phases of the agent's shutdown, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Stop the sources: scrapers and the GPU poller finish what they are
    /// doing and spool nothing more.
    Sources,
    /// Stop the sender: no new batch is sent; the acks of those in flight
    /// are recorded in the spool as they arrive, until the deadline.
    Sender,
    /// Sync the spool to disk.
    Spool,
    /// Exit: the metrics endpoint stops.
    Exit,
}

impl Phases for Phase {
    const ALL: &'static [Self] = &[Phase::Sources, Phase::Sender, Phase::Spool, Phase::Exit];

    fn as_str(self) -> &'static str {
        match self {
            Phase::Sources => "stop sources",
            Phase::Sender => "flush acks",
            Phase::Spool => "sync spool",
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
    /// Stop the sources.
    pub sources: Duration,
    /// Flush acks, then close the connection.
    pub sender: Duration,
    /// Sync the spool.
    pub spool: Duration,
    /// Stop the metrics endpoint.
    pub exit: Duration,
}

impl Deadlines {
    /// How long the sender waits for the acks of the batches in flight.
    pub const ACK_FLUSH: Duration = Duration::from_secs(5);

    /// The agent's deadlines: a scrape in progress may finish (the longest
    /// target timeout, plus 1 s), the sender gets [`ACK_FLUSH`](Self::ACK_FLUSH)
    /// plus 1 s to close, the spool 5 s to sync, the metrics endpoint 1 s.
    pub fn from_settings(settings: &Settings) -> Self {
        let longest_scrape = settings
            .targets
            .iter()
            .map(|t| t.timeout)
            .max()
            .unwrap_or_default();
        Self {
            sources: longest_scrape + Duration::from_secs(1),
            sender: Self::ACK_FLUSH + Duration::from_secs(1),
            spool: Duration::from_secs(5),
            exit: Duration::from_secs(1),
        }
    }

    /// The deadline of one phase.
    pub fn of(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Sources => self.sources,
            Phase::Sender => self.sender,
            Phase::Spool => self.spool,
            Phase::Exit => self.exit,
        }
    }

    /// The longest a whole shutdown can take.
    pub fn total(&self) -> Duration {
        Phase::ALL.iter().map(|p| self.of(*p)).sum()
    }
}
