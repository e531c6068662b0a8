//! A flush's rows in encoding order ([`SortedRows`]): the metric and node
//! names coded ([`Codes`]) and ranked, each row keyed ([`SortKey`]) and
//! sorted ([`sort_keys`]), and what the key leaves out of each row moved
//! into that order ([`Rest`]).

use std::sync::Mutex;

use super::codes::Codes;
use super::groups::node_bucket;
use super::labels::{LabelSets, RowSets};
use super::schema::RawRow;
use super::sort::{SortKey, sort_keys};
use crate::layout::Hour;
use crate::proto::{Label, MetricType};

/// A flush's rows in encoding order, with their metric names and nodes as
/// dictionary codes.
pub(super) struct SortedRows<'a> {
    /// The sort key and the row's index in `rest`, in sorted order.
    pub(super) order: Vec<(SortKey, u32)>,
    /// What the key leaves out of each row, in the order of `order`, so
    /// that the columns are read in order, not from all over the flush's
    /// rows.
    pub(super) rest: Vec<Rest<'a>>,
    /// Distinct node names by rank (sorted).
    pub(super) nodes: Vec<&'a str>,
    /// Distinct metric names by rank (sorted).
    pub(super) metrics: Vec<&'a str>,
    /// Each node's bucket ([`node_bucket`]), by rank.
    pub(super) node_buckets: Vec<u16>,
    /// The label sets the rows' `set` numbers belong to, and their
    /// generation.
    pub(super) sets: Option<(&'a Mutex<LabelSets>, u32)>,
}

/// The part of a row that is not in its [`SortKey`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rest<'a> {
    pub(super) labels: &'a [Label],
    /// The number of the row's label set, if the flush has them
    /// ([`RowSets`]).
    pub(super) set: u32,
    pub(super) value: f64,
    pub(super) received_at: i64,
    pub(super) metric_type: MetricType,
}

impl<'a> SortedRows<'a> {
    pub(super) fn new(rows: &[RawRow<'a>], sets: Option<&RowSets<'a>>) -> Self {
        let mut nodes = Codes::default();
        let mut metrics = Codes::default();
        let codes: Vec<(u32, u32)> = rows
            .iter()
            .map(|r| (metrics.code(r.metric), nodes.code(r.node)))
            .collect();
        let (metrics, metric_rank) = metrics.ranked();
        let (nodes, node_rank) = nodes.ranked();
        let set_of = sets.map(|s| &s.of_row[..]);
        let keyed = rows
            .iter()
            .zip(&codes)
            .enumerate()
            .map(|(i, (r, &(metric, node)))| {
                let key = SortKey {
                    hour: Hour::of_nanos(r.time),
                    metric: metric_rank[metric as usize],
                    node: node_rank[node as usize],
                    series_id: r.series_id,
                    time: r.time,
                };
                let rest = Rest {
                    labels: r.labels,
                    set: set_of.map_or(u32::MAX, |s| s[i]),
                    value: r.value,
                    received_at: r.received_at,
                    metric_type: r.metric_type,
                };
                (key, rest)
            });
        let (order, rest) = sort_keys(keyed, metrics.len(), nodes.len());
        let node_buckets = nodes.iter().map(|n| node_bucket(n)).collect();
        Self {
            order,
            rest,
            nodes,
            metrics,
            node_buckets,
            sets: sets.map(|s| (s.sets, s.generation)),
        }
    }
}
