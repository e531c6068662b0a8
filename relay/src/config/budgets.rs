//! `budgets`: per-node cardinality budgets (see docs/budgets.md).

use std::collections::BTreeMap;
use std::time::Duration;

use horizon_shared::config::check::positive;
use horizon_shared::config::{ConfigError, invalid};
use serde::Deserialize;

/// `budgets`: per-node cardinality budgets (see docs/budgets.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// Live series one node may have.
    pub max_series_per_node: usize,
    /// Live series one node may have for one metric; 0 means no per-metric cap.
    pub max_series_per_metric: usize,
    /// A series that has not reported for this long frees its slot.
    pub series_ttl_secs: u64,
    /// Nodes listed in the budget metrics (the top N by usage and by rejections).
    pub metrics_top_nodes: usize,
    /// Per-node exceptions, keyed by node identity.
    pub node_overrides: BTreeMap<String, NodeOverride>,
}

impl Default for BudgetsConfig {
    fn default() -> Self {
        Self {
            max_series_per_node: 10_000,
            max_series_per_metric: 0,
            series_ttl_secs: 600,
            metrics_top_nodes: 20,
            node_overrides: BTreeMap::new(),
        }
    }
}

/// A per-node exception to the budgets; unset fields keep the default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeOverride {
    /// Replaces `budgets.max_series_per_node` for this node.
    pub max_series: Option<usize>,
    /// Replaces `budgets.max_series_per_metric` for this node.
    pub max_series_per_metric: Option<usize>,
}

/// Budget settings after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSettings {
    /// Default series per node.
    pub max_series_per_node: usize,
    /// Default series per metric per node (`None`: no cap).
    pub max_series_per_metric: Option<usize>,
    /// Relay-wide cap.
    pub max_series_total: usize,
    /// Series expiry.
    pub series_ttl: Duration,
    /// Nodes shown in the budget metrics.
    pub metrics_top_nodes: usize,
    /// Per-node exceptions.
    pub overrides: BTreeMap<String, NodeOverride>,
}

impl BudgetsConfig {
    /// Checks the section; `max_series_total` is `limits.max_cardinality`.
    pub fn validate(&self, max_series_total: usize) -> Result<BudgetSettings, ConfigError> {
        positive("budgets.max_series_per_node", self.max_series_per_node)?;
        positive("budgets.series_ttl_secs", self.series_ttl_secs)?;
        for (node, o) in &self.node_overrides {
            if o.max_series == Some(0) {
                return Err(invalid(
                    format!("budgets.node_overrides.{node}.max_series"),
                    "must be at least 1",
                ));
            }
        }
        Ok(BudgetSettings {
            max_series_per_node: self.max_series_per_node,
            max_series_per_metric: (self.max_series_per_metric > 0)
                .then_some(self.max_series_per_metric),
            max_series_total,
            series_ttl: Duration::from_secs(self.series_ttl_secs),
            metrics_top_nodes: self.metrics_top_nodes,
            overrides: self.node_overrides.clone(),
        })
    }
}
