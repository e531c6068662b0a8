//! The relay's Prometheus metrics (served by [`crate::http`]), by area:
//! connections and handshakes (`connections.rs`), streams and batches
//! (`streams.rs`), flow control and limits (`flow.rs`), per-node budgets
//! (`budget.rs`, computed at scrape time), the sinks' (`crate::sink`) and
//! TLS (`tls.rs`). Registered in that order, which is the exposition's.
//!
//! Every label has a bounded set of values: reasons and kinds are fixed
//! enums, and per-node budget metrics list only the top nodes
//! (`budgets.metrics_top_nodes`), computed at scrape time.

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::budget::Budgets;
use crate::config::Settings;

mod budget;
mod connections;
mod flow;
mod labels;
mod streams;
mod tls;

pub use connections::ConnectionMetrics;
pub use flow::{FlowMetrics, Throttle};
pub use streams::{StreamErrorKind, StreamMetrics};
pub use tls::TlsMetrics;

use budget::BudgetCollector;

/// Handles to every metric the relay updates.
#[derive(Debug)]
pub struct RelayMetrics {
    registry: Registry,
    /// Connections and handshakes.
    pub connections: ConnectionMetrics,
    /// Streams, batches and points.
    pub streams: StreamMetrics,
    /// Batches in flight, waits for limits, the limits.
    pub flow: FlowMetrics,
    /// Sink metrics (registered in the same registry).
    pub sink: Arc<crate::sink::SinkMetrics>,
    /// Certificate, CRL and revocation metrics.
    pub tls: TlsMetrics,
}

impl RelayMetrics {
    /// Registers every metric, plus the per-node budget collector; the
    /// configured limits are exported as `horizon_relay_limit`.
    pub fn new(budgets: Arc<Budgets>, settings: &Settings) -> Self {
        let top_nodes = settings.budgets.metrics_top_nodes;
        let mut r = Registry::with_prefix("horizon_relay");
        let connections = ConnectionMetrics::new(&mut r);
        let streams = StreamMetrics::new(&mut r);
        let flow = FlowMetrics::new(&mut r, settings);
        r.register_collector(Box::new(BudgetCollector { budgets, top_nodes }));
        let sink = Arc::new(crate::sink::SinkMetrics::new(&mut r));
        let tls = TlsMetrics::new(&mut r);
        Self {
            registry: r,
            connections,
            streams,
            flow,
            sink,
            tls,
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
