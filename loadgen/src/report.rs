//! What a load-generator run reports: points, acks, latency, failover.

use serde::Serialize;

/// Results of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    /// Points handed to the clients.
    pub points_sent: u64,
    /// Points acked as accepted.
    pub points_acked: u64,
    /// Points acked as rejected, by reason.
    pub points_rejected: RejectedByReason,
    /// Points sent but never acked (connection lost, timeout).
    pub points_unacked: u64,
    /// Batches acked.
    pub batches_acked: u64,
    /// Acked points (accepted + rejected) per second of the run.
    pub points_per_sec: f64,
    /// Ack latency percentiles, milliseconds.
    pub ack_latency_ms: Latency,
    /// Failed connection attempts plus connections lost.
    pub connection_errors: u64,
    /// Of those, connections lost: established, then ended by an error
    /// (the relay taken for silent or gone, the stream failed).
    pub connections_lost: u64,
    /// Of those, connections given up because the relay was silent for the
    /// client's liveness timeout; the rest ended in an error from the relay
    /// or the stream.
    pub connections_lost_to_silence: u64,
    /// Of the failed attempts, connections the relay ended, or that went
    /// silent, before it confirmed their handshake.
    pub connections_unconfirmed: u64,
    /// Nodes with at least one connection error.
    pub nodes_with_connection_errors: u64,
    /// Nodes that lost at least one established connection.
    pub nodes_that_lost_a_connection: u64,
    /// Batches resent after a reconnect.
    pub resends: u64,
    /// Acks that report the relay held the batch back, and for how long.
    pub throttled: Throttled,
    /// Nodes that could not connect at all.
    pub nodes_failed: u64,
    /// How long nodes went without an ack: the failover time of those
    /// that reconnected (a relay killed, drained or unreachable).
    pub failover: Failover,
    /// Wall-clock seconds from the first send to the last ack.
    pub elapsed_secs: f64,
}

/// Rejected points by reason.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RejectedByReason {
    /// Over a cardinality budget.
    pub cardinality: u64,
    /// Invalid.
    pub invalid: u64,
    /// Batch too large.
    pub too_large: u64,
    /// Relay overloaded.
    pub overloaded: u64,
}

/// What acks said about the relay's limits holding batches back
/// (`queue_wait_ms`, `in_flight_wait_ms`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Throttled {
    /// Batches that waited for room in the relay's sink queue.
    pub sink_queue_batches: u64,
    /// Their waits added up, milliseconds.
    pub sink_queue_ms: u64,
    /// Batches that waited for an in-flight slot of their connection.
    pub in_flight_batches: u64,
    /// Their waits added up, milliseconds.
    pub in_flight_ms: u64,
}

/// Each node's longest time between two acks in a row, over the nodes that
/// reconnected during the run and over the others. For a node whose relay
/// died, it is the time from its last ack on that relay to its first ack
/// on the next one.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Failover {
    /// Nodes that reconnected at least once.
    pub nodes_moved: u64,
    /// Longest ack gap of each node that reconnected, percentiles over them, ms.
    pub moved_gap_ms: Latency,
    /// The same over the nodes that never reconnected (the steady ack cadence), ms.
    pub stayed_gap_ms: Latency,
}

/// Percentiles of `values` (nearest rank), all zero when empty.
pub(crate) fn percentiles(values: &mut [f64]) -> Latency {
    if values.is_empty() {
        return Latency::default();
    }
    values.sort_by(f64::total_cmp);
    let at =
        |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    Latency {
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: values[values.len() - 1],
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl Report {
    /// A human summary, several lines.
    pub fn human(&self) -> String {
        let r = &self.points_rejected;
        let l = &self.ack_latency_ms;
        let t = &self.throttled;
        format!(
            "points sent      {}\n\
             points accepted  {}\n\
             points rejected  cardinality {}, invalid {}, too large {}, overloaded {}\n\
             points unacked   {}\n\
             batches acked    {}\n\
             throughput       {:.0} points/s over {:.1} s\n\
             ack latency      p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n\
             relay pushback   {} batches waited for the sink queue ({} ms), {} for in-flight slots ({} ms)\n\
             connections      {} errors ({} connections lost, {} of them to a silent relay; {} handshakes the relay never confirmed; {} nodes had an error, {} lost a connection), {} batches resent, {} nodes failed\n\
             ack gaps         {} nodes reconnected: longest gap p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; others p50 {:.0} ms, max {:.0} ms\n",
            self.points_sent,
            self.points_acked,
            r.cardinality,
            r.invalid,
            r.too_large,
            r.overloaded,
            self.points_unacked,
            self.batches_acked,
            self.points_per_sec,
            self.elapsed_secs,
            l.p50,
            l.p99,
            l.p999,
            l.max,
            t.sink_queue_batches,
            t.sink_queue_ms,
            t.in_flight_batches,
            t.in_flight_ms,
            self.connection_errors,
            self.connections_lost,
            self.connections_lost_to_silence,
            self.connections_unconfirmed,
            self.nodes_with_connection_errors,
            self.nodes_that_lost_a_connection,
            self.resends,
            self.nodes_failed,
            self.failover.nodes_moved,
            self.failover.moved_gap_ms.p50,
            self.failover.moved_gap_ms.p99,
            self.failover.moved_gap_ms.max,
            self.failover.stayed_gap_ms.p50,
            self.failover.stayed_gap_ms.max,
        )
    }
}
