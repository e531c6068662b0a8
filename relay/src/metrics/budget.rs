//! Per-node budget metrics, computed at scrape time for the top nodes only
//! (`budgets.metrics_top_nodes`), so the node label's values stay bounded.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::budget::Budgets;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

/// Per-node budget usage, computed at scrape time for the top nodes only.
#[derive(Debug)]
pub(super) struct BudgetCollector {
    pub(super) budgets: Arc<Budgets>,
    pub(super) top_nodes: usize,
}

impl Collector for BudgetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = |v: usize| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
        g(self.budgets.total()).encode(encoder.encode_descriptor(
            "budget_series",
            "Live series across all nodes (relay-wide budget usage)",
            None,
            MetricType::Gauge,
        )?)?;
        g(self.budgets.max_total()).encode(encoder.encode_descriptor(
            "budget_series_limit",
            "Relay-wide series cap (limits.max_cardinality)",
            None,
            MetricType::Gauge,
        )?)?;
        g(self.budgets.node_count()).encode(encoder.encode_descriptor(
            "budget_nodes",
            "Nodes with budget state on this relay",
            None,
            MetricType::Gauge,
        )?)?;
        let top = self.budgets.top_nodes(self.top_nodes);
        let mut live = encoder.encode_descriptor(
            "budget_node_series",
            "Live series of a node (top nodes by usage and by rejections only)",
            None,
            MetricType::Gauge,
        )?;
        for u in &top {
            g(u.live).encode(live.encode_family(&NodeLabel {
                node: u.node.to_string(),
            })?)?;
        }
        let mut limit = encoder.encode_descriptor(
            "budget_node_series_limit",
            "Series budget of a node (same nodes as budget_node_series)",
            None,
            MetricType::Gauge,
        )?;
        for u in &top {
            g(u.limit).encode(limit.encode_family(&NodeLabel {
                node: u.node.to_string(),
            })?)?;
        }
        let mut rejected = encoder.encode_descriptor(
            "budget_node_rejected_points",
            "Points of new series refused for a node since it was first seen (same nodes as budget_node_series)",
            None,
            MetricType::Counter,
        )?;
        for u in &top {
            ConstCounter::new(u.rejected_points).encode(rejected.encode_family(&NodeLabel {
                node: u.node.to_string(),
            })?)?;
        }
        Ok(())
    }
}
