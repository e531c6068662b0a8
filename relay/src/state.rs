//! The state every connection and stream of the relay shares: settings,
//! limits, budgets, metrics, the drain signal and the sink pipeline. The
//! server builds it; connections and the TLS reloader read it from here.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::budget::Budgets;
use crate::config::Settings;
use crate::handshake::Handshakes;
use crate::ingest::{ByteBudget, IngestLimits};
use crate::log_limit::LogLimiter;
use crate::metrics::RelayMetrics;
use crate::open::OpenConnections;

/// State shared by every connection and stream.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) limits: IngestLimits,
    pub(crate) budgets: Arc<Budgets>,
    pub(crate) metrics: Arc<RelayMetrics>,
    /// Fires when shutdown reaches [`Phase::Connections`](crate::shutdown::Phase::Connections): streams send
    /// `GoAway` and get `server.drain_grace_secs` to finish.
    pub(crate) drain: CancellationToken,
    pub(crate) handshake_log: LogLimiter,
    pub(crate) refused_log: LogLimiter,
    pub(crate) replaced_log: LogLimiter,
    pub(crate) pipeline: crate::sink::Pipeline,
    /// Handshakes in progress (`server.max_handshakes_in_progress`).
    pub(crate) handshakes: Arc<Handshakes>,
    /// Authenticated connections (`server.max_connections`).
    pub(crate) connection_slots: Arc<Semaphore>,
    /// Every series dictionary's bytes (`limits.max_dictionary_bytes_total`).
    pub(crate) dictionary_bytes: Arc<ByteBudget>,
    /// Bytes of frames being read, all connections
    /// (`limits.max_frame_buffer_bytes_total`).
    pub(crate) frame_bytes: Arc<Semaphore>,
    /// Authenticated connections being served, by node, each holding one
    /// of the `connection_slots` (`server.max_connections_per_node`; read
    /// by revocation on reload).
    pub(crate) open: Arc<OpenConnections>,
}

impl Shared {
    /// Counts and (rate-limited) logs a connection refused at
    /// `server.max_connections`.
    pub(crate) fn refuse_at_limit(&self, remote: SocketAddr) {
        self.metrics.connections.refused("limit");
        if let Some(suppressed) = self.refused_log.allow() {
            warn!(
                %remote,
                max_connections = self.settings.server.max_connections,
                suppressed,
                "connection refused: at server.max_connections"
            );
        }
    }
}
