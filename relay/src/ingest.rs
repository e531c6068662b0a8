//! Batch processing, pure and I/O-free: applies a batch's series definitions
//! to the stream's dictionary, validates every point, runs the cardinality
//! admission, and produces the ack plus the accepted points.

use std::sync::Arc;

use horizon_shared::model::{SeriesLimits, TimeWindow, validate_point};
use horizon_shared::proto::{BatchAck, Durability, MetricBatch, RejectReason, Rejection};

use crate::budget::{Admission, Budgets, Limit, NodeBudget};

mod dictionary;
mod series;

pub use dictionary::{ByteBudget, DefineError, DictionaryBound, StreamDictionary};
pub use series::SeriesEntry;
use series::cut;

/// Limits applied to every batch.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Points per batch.
    pub max_batch_size: usize,
    /// Series validation.
    pub series: SeriesLimits,
    /// Accepted timestamps.
    pub time_window: TimeWindow,
}

/// One accepted point, ready for the sinks.
#[derive(Debug, Clone)]
pub struct AcceptedPoint {
    /// Its series.
    pub series: Arc<SeriesEntry>,
    /// Unix nanoseconds.
    pub time_unix_nano: i64,
    /// Value (finite).
    pub value: f64,
}

/// Counts by reason, for the ack and the metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RejectCounts {
    /// Over a cardinality cap, by cap.
    pub cardinality_node: u32,
    /// Over the per-metric cap.
    pub cardinality_metric: u32,
    /// Over the relay-wide cap.
    pub cardinality_relay: u32,
    /// Invalid points or series.
    pub invalid: u32,
    /// Batch over the size limit.
    pub too_large: u32,
}

impl RejectCounts {
    /// All cardinality rejections.
    pub fn cardinality(&self) -> u32 {
        self.cardinality_node + self.cardinality_metric + self.cardinality_relay
    }
}

/// What processing one batch produced.
#[derive(Debug)]
pub struct BatchOutcome {
    /// The ack to send.
    pub ack: BatchAck,
    /// Accepted points, in batch order.
    pub accepted: Vec<AcceptedPoint>,
    /// Rejections by reason.
    pub rejects: RejectCounts,
    /// New series admitted to the budget by this batch.
    pub new_series: u32,
    /// Definitions in this batch that could not be stored (id out of range).
    pub bad_defs: u32,
    /// Definitions in this batch refused by a dictionary memory bound.
    pub refused_defs: u32,
    /// Example of a cardinality rejection, for the rate-limited warning.
    pub cardinality_example: Option<String>,
}

#[derive(Default)]
struct Examples {
    cardinality: Option<String>,
    invalid: Option<String>,
}

/// Processes one batch from `node` at `now_ns` (Unix ns) / `now_secs`
/// (budget clock).
pub fn process_batch(
    batch: MetricBatch,
    dict: &mut StreamDictionary,
    budgets: &Budgets,
    node: &NodeBudget,
    limits: &IngestLimits,
    now_ns: i64,
    now_secs: u32,
) -> BatchOutcome {
    let mut rejects = RejectCounts::default();
    let mut examples = Examples::default();
    let mut bad_defs = 0;
    let mut refused_defs = 0;
    for def in batch.series_defs {
        match dict.define(def, &limits.series) {
            Ok(()) => {}
            Err(e @ DefineError::IdBeyondLimit { .. }) => {
                bad_defs += 1;
                examples.invalid.get_or_insert_with(|| e.to_string());
            }
            Err(e @ DefineError::Full { .. }) => {
                refused_defs += 1;
                examples.invalid.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let n = batch
        .series_ids
        .len()
        .max(batch.time_deltas.len())
        .max(batch.values.len());
    let total = u32::try_from(n).unwrap_or(u32::MAX);
    let whole = |reason: RejectReason, message: String| BatchOutcome {
        ack: BatchAck {
            sequence: batch.sequence,
            accepted: 0,
            rejected: total,
            rejections: vec![Rejection {
                reason: reason as i32,
                count: total,
                message,
            }],
            durability: Durability::Received as i32,
            ..BatchAck::default()
        },
        accepted: Vec::new(),
        rejects: RejectCounts {
            invalid: if reason == RejectReason::Invalid {
                total
            } else {
                0
            },
            too_large: if reason == RejectReason::TooLarge {
                total
            } else {
                0
            },
            ..RejectCounts::default()
        },
        new_series: 0,
        bad_defs,
        refused_defs,
        cardinality_example: None,
    };
    if n > limits.max_batch_size {
        return whole(
            RejectReason::TooLarge,
            format!(
                "batch of {n} points exceeds limits.max_batch_size = {}",
                limits.max_batch_size
            ),
        );
    }
    if batch.series_ids.len() != n || batch.time_deltas.len() != n || batch.values.len() != n {
        return whole(
            RejectReason::Invalid,
            format!(
                "point columns differ in length: {} series_ids, {} time_deltas, {} values",
                batch.series_ids.len(),
                batch.time_deltas.len(),
                batch.values.len()
            ),
        );
    }

    let bounds = limits.time_window.bounds(now_ns);
    let mut accepted = Vec::with_capacity(n);
    let mut new_series = 0;
    let mut t = batch.base_time_unix_nano;
    let mut time_ok = true;
    let mut guard = budgets.lock(node);
    for i in 0..n {
        match t.checked_add(batch.time_deltas[i]) {
            Some(v) if time_ok => t = v,
            _ => time_ok = false,
        }
        let id = batch.series_ids[i];
        let value = batch.values[i];
        let entry = match dict.lookup(id) {
            Ok(e) => e,
            Err(why) => {
                rejects.invalid += 1;
                examples
                    .invalid
                    .get_or_insert_with(|| format!("point {i}: {why}"));
                continue;
            }
        };
        if !time_ok {
            rejects.invalid += 1;
            examples
                .invalid
                .get_or_insert_with(|| format!("point {i}: timestamp overflows 64 bits"));
            continue;
        }
        if let Err(e) = validate_point(t, value, bounds) {
            rejects.invalid += 1;
            examples
                .invalid
                .get_or_insert_with(|| format!("point {i} of {:?}: {e}", cut(&entry.metric)));
            continue;
        }
        match guard.admit(entry.series_hash, entry.metric_hash, now_secs) {
            Admission::Existing => {}
            Admission::New => new_series += 1,
            Admission::Rejected(limit) => {
                match limit {
                    Limit::Node => rejects.cardinality_node += 1,
                    Limit::Metric => rejects.cardinality_metric += 1,
                    Limit::Relay => rejects.cardinality_relay += 1,
                }
                examples.cardinality.get_or_insert_with(|| {
                    cardinality_message(&node.usage(), limit, &entry.metric, budgets)
                });
                continue;
            }
        }
        accepted.push(AcceptedPoint {
            series: entry.clone(),
            time_unix_nano: t,
            value,
        });
    }
    drop(guard);

    let mut rejections = Vec::new();
    if rejects.cardinality() > 0 {
        rejections.push(Rejection {
            reason: RejectReason::Cardinality as i32,
            count: rejects.cardinality(),
            message: examples.cardinality.clone().unwrap_or_default(),
        });
    }
    if rejects.invalid > 0 {
        rejections.push(Rejection {
            reason: RejectReason::Invalid as i32,
            count: rejects.invalid,
            message: examples.invalid.unwrap_or_default(),
        });
    }
    let accepted_n = u32::try_from(accepted.len()).unwrap_or(u32::MAX);
    BatchOutcome {
        ack: BatchAck {
            sequence: batch.sequence,
            accepted: accepted_n,
            rejected: total - accepted_n,
            rejections,
            durability: Durability::Received as i32,
            ..BatchAck::default()
        },
        accepted,
        rejects,
        new_series,
        bad_defs,
        refused_defs,
        cardinality_example: examples.cardinality,
    }
}

fn cardinality_message(
    u: &crate::budget::NodeUsage,
    limit: Limit,
    metric: &str,
    budgets: &Budgets,
) -> String {
    match limit {
        Limit::Node => format!(
            "node {} is at its series budget ({}/{} live series); new series of {:?} refused",
            u.node,
            u.live,
            u.limit,
            cut(metric)
        ),
        Limit::Metric => format!(
            "node {} is at its per-metric series cap for {:?}; new series refused",
            u.node,
            cut(metric)
        ),
        Limit::Relay => format!(
            "relay is at its series cap ({} live series); new series of {:?} refused",
            budgets.total(),
            cut(metric)
        ),
    }
}

#[cfg(test)]
mod tests;
