//! Per-node cardinality budgets.
//!
//! A node may hold at most `max_series_per_node` live series (metric name +
//! label set), optionally at most `max_series_per_metric` of one metric, and
//! the whole relay at most `max_series_total`. A series is live from the
//! first point admitted until it has not reported for `series_ttl`. Points of
//! series already live are always admitted; points of a *new* series over any
//! cap are rejected and counted.
//!
//! State is soft and in memory: about 16 bytes of table per live series (a
//! `u64` series hash and an 8-byte slot) plus hash-table slack; see
//! docs/budgets.md for measured figures and failover behaviour.
//!
//! Time is passed in explicitly as whole seconds since the relay started
//! ([`Budgets::now`]), so tests drive expiry without sleeping.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use crate::config::BudgetSettings;

/// Hasher for keys that are already uniform 64-bit hashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Prehashed = BuildHasherDefault<PrehashedHasher>;

/// Which cap refused a new series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The node's series budget.
    Node,
    /// The node's per-metric cap.
    Metric,
    /// The relay-wide cap.
    Relay,
}

impl Limit {
    /// Label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Node => "node",
            Limit::Metric => "metric",
            Limit::Relay => "relay",
        }
    }
}

/// The outcome of an admission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The series was live; its expiry clock restarted.
    Existing,
    /// The series is new and now live.
    New,
    /// The series is new and over a cap.
    Rejected(Limit),
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    last_seen: u32,
    metric: u32,
}

#[derive(Debug, Default)]
struct NodeState {
    series: HashMap<u64, Slot, Prehashed>,
    /// Interned metrics of this node: hash -> index into `metric_live`.
    metric_ids: HashMap<u64, u32, Prehashed>,
    metric_live: Vec<u32>,
    last_full_sweep: u32,
    last_warn: Option<u32>,
    unwarned_rejections: u64,
}

/// The budget of one node. Connections of the node share it.
#[derive(Debug)]
pub struct NodeBudget {
    node: Arc<str>,
    max_series: AtomicUsize,
    /// 0 means no per-metric cap.
    max_per_metric: AtomicUsize,
    state: Mutex<NodeState>,
    live: AtomicUsize,
    rejected_points: AtomicU64,
}

/// Per-node usage, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsage {
    /// Node identity.
    pub node: Arc<str>,
    /// Live series.
    pub live: usize,
    /// The node's series budget.
    pub limit: usize,
    /// Points rejected for cardinality since the node was first seen.
    pub rejected_points: u64,
}

/// All budgets of one relay.
#[derive(Debug)]
pub struct Budgets {
    settings: RwLock<BudgetSettings>,
    nodes: RwLock<HashMap<Arc<str>, Arc<NodeBudget>>>,
    total: AtomicUsize,
    epoch: Instant,
}

impl Budgets {
    /// Empty budgets with these settings.
    pub fn new(settings: BudgetSettings) -> Self {
        Self {
            settings: RwLock::new(settings),
            nodes: RwLock::default(),
            total: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    /// Seconds since these budgets were created: the clock the relay passes to
    /// [`NodeGuard::admit`] and [`Budgets::sweep`].
    pub fn now(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn settings(&self) -> std::sync::RwLockReadGuard<'_, BudgetSettings> {
        self.settings.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn limits_for(settings: &BudgetSettings, node: &str) -> (usize, usize) {
        let o = settings.overrides.get(node);
        let max = o
            .and_then(|o| o.max_series)
            .unwrap_or(settings.max_series_per_node);
        let per_metric = o
            .and_then(|o| o.max_series_per_metric)
            .or(settings.max_series_per_metric)
            .unwrap_or(0);
        (max, per_metric)
    }

    /// The budget of `node`, created on first use.
    pub fn node(&self, node: &str) -> Arc<NodeBudget> {
        if let Some(b) = self
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
        {
            return b.clone();
        }
        let (max, per_metric) = Self::limits_for(&self.settings(), node);
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        nodes
            .entry(Arc::from(node))
            .or_insert_with_key(|k| {
                Arc::new(NodeBudget {
                    node: k.clone(),
                    max_series: AtomicUsize::new(max),
                    max_per_metric: AtomicUsize::new(per_metric),
                    state: Mutex::default(),
                    live: AtomicUsize::new(0),
                    rejected_points: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Replaces the settings (config reload). Caps apply to new series from
    /// now on; series already live above a lowered cap stay until they expire.
    pub fn reconfigure(&self, settings: BudgetSettings) {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        for (name, b) in nodes.iter() {
            let (max, per_metric) = Self::limits_for(&settings, name);
            b.max_series.store(max, Ordering::Relaxed);
            b.max_per_metric.store(per_metric, Ordering::Relaxed);
        }
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = settings;
    }

    /// Locks a node's budget for a batch of admission checks.
    pub fn lock<'a>(&'a self, node: &'a NodeBudget) -> NodeGuard<'a> {
        NodeGuard {
            budgets: self,
            node,
            state: node.state.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Expires series not seen for the TTL and forgets nodes that have no
    /// live series and no connection. Returns how many series expired.
    pub fn sweep(&self, now: u32) -> usize {
        let ttl = self.ttl_secs();
        let nodes: Vec<_> = self
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut expired = 0;
        for node in &nodes {
            let mut g = self.lock(node);
            expired += g.expire(now, ttl);
            g.compact_metrics();
            g.state.last_full_sweep = now;
        }
        drop(nodes);
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, b| Arc::strong_count(b) > 1 || b.live.load(Ordering::Relaxed) > 0);
        expired
    }

    fn ttl_secs(&self) -> u32 {
        u32::try_from(self.settings().series_ttl.as_secs()).unwrap_or(u32::MAX)
    }

    /// Live series across all nodes.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// The relay-wide cap.
    pub fn max_total(&self) -> usize {
        self.settings().max_series_total
    }

    /// Nodes currently tracked.
    pub fn node_count(&self) -> usize {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The `n` nodes with the most live series, together with the `n` nodes
    /// with the most rejected points (so a spraying node is always visible),
    /// without duplicates, ordered by live series.
    pub fn top_nodes(&self, n: usize) -> Vec<NodeUsage> {
        let mut all: Vec<NodeUsage> = self
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|b| b.usage())
            .collect();
        if all.len() > n {
            all.sort_unstable_by_key(|u| std::cmp::Reverse(u.rejected_points));
            let mut keep: Vec<NodeUsage> = all
                .iter()
                .take(n)
                .filter(|u| u.rejected_points > 0)
                .cloned()
                .collect();
            all.sort_unstable_by(|a, b| b.live.cmp(&a.live).then_with(|| a.node.cmp(&b.node)));
            for u in all.into_iter().take(n) {
                if !keep.iter().any(|k| k.node == u.node) {
                    keep.push(u);
                }
            }
            all = keep;
        }
        all.sort_unstable_by(|a, b| b.live.cmp(&a.live).then_with(|| a.node.cmp(&b.node)));
        all
    }
}

impl NodeBudget {
    /// The node's identity.
    pub fn node(&self) -> &Arc<str> {
        &self.node
    }

    /// Current usage.
    pub fn usage(&self) -> NodeUsage {
        NodeUsage {
            node: self.node.clone(),
            live: self.live.load(Ordering::Relaxed),
            limit: self.max_series.load(Ordering::Relaxed),
            rejected_points: self.rejected_points.load(Ordering::Relaxed),
        }
    }
}

/// A locked node budget.
#[derive(Debug)]
pub struct NodeGuard<'a> {
    budgets: &'a Budgets,
    node: &'a NodeBudget,
    state: MutexGuard<'a, NodeState>,
}

/// Rejections not yet reported in a warning, returned by [`NodeGuard::take_warning`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetWarning {
    /// Points rejected since the last warning.
    pub rejected: u64,
    /// Live series of the node.
    pub live: usize,
    /// The node's budget.
    pub limit: usize,
}

impl NodeGuard<'_> {
    /// Admits a point of the series `series_hash` (of metric `metric_hash`)
    /// at time `now`. Does not allocate for series already live.
    pub fn admit(&mut self, series_hash: u64, metric_hash: u64, now: u32) -> Admission {
        if let Some(slot) = self.state.series.get_mut(&series_hash) {
            slot.last_seen = now;
            return Admission::Existing;
        }
        let max = self.node.max_series.load(Ordering::Relaxed);
        if self.state.series.len() >= max {
            // Full: expired series may free a slot. A full scan at most once
            // per second per node keeps a spraying node cheap.
            if now > self.state.last_full_sweep {
                self.state.last_full_sweep = now;
                let ttl = self.budgets.ttl_secs();
                self.expire(now, ttl);
            }
            if self.state.series.len() >= max {
                return self.reject(Limit::Node);
            }
        }
        let per_metric = self.node.max_per_metric.load(Ordering::Relaxed);
        let known_metric = self.state.metric_ids.get(&metric_hash).copied();
        if let Some(m) = known_metric
            && per_metric > 0
            && self.state.metric_live[m as usize] as usize >= per_metric
        {
            return self.reject(Limit::Metric);
        }
        let max_total = self.budgets.max_total();
        if self
            .budgets
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < max_total).then_some(t + 1)
            })
            .is_err()
        {
            return self.reject(Limit::Relay);
        }
        // Interned only once admitted, so refused metrics take no memory.
        let metric = known_metric.unwrap_or_else(|| {
            let idx = u32::try_from(self.state.metric_live.len()).unwrap_or(u32::MAX);
            self.state.metric_ids.insert(metric_hash, idx);
            self.state.metric_live.push(0);
            idx
        });
        self.state.series.insert(
            series_hash,
            Slot {
                last_seen: now,
                metric,
            },
        );
        self.state.metric_live[metric as usize] += 1;
        self.node
            .live
            .store(self.state.series.len(), Ordering::Relaxed);
        Admission::New
    }

    /// Drops interned metrics that have no live series left, renumbering the
    /// rest, once they make up more than half of the table.
    fn compact_metrics(&mut self) {
        let NodeState {
            series,
            metric_ids,
            metric_live,
            ..
        } = &mut *self.state;
        let dead = metric_live.iter().filter(|c| **c == 0).count();
        if dead == 0 || dead * 2 < metric_live.len() {
            return;
        }
        let mut renumber = vec![u32::MAX; metric_live.len()];
        let mut live = Vec::with_capacity(metric_live.len() - dead);
        for (old, count) in metric_live.iter().enumerate() {
            if *count > 0 {
                renumber[old] = u32::try_from(live.len()).unwrap_or(u32::MAX);
                live.push(*count);
            }
        }
        metric_ids.retain(|_, idx| {
            let new = renumber[*idx as usize];
            *idx = new;
            new != u32::MAX
        });
        for slot in series.values_mut() {
            slot.metric = renumber[slot.metric as usize];
        }
        *metric_live = live;
    }

    /// Interned metrics (live or not yet compacted away).
    pub fn interned_metrics(&self) -> usize {
        self.state.metric_live.len()
    }

    fn reject(&mut self, limit: Limit) -> Admission {
        self.node.rejected_points.fetch_add(1, Ordering::Relaxed);
        self.state.unwarned_rejections += 1;
        Admission::Rejected(limit)
    }

    /// Rejections to log, at most once per `interval_secs` per node.
    pub fn take_warning(&mut self, now: u32, interval_secs: u32) -> Option<BudgetWarning> {
        if self.state.unwarned_rejections == 0 {
            return None;
        }
        if self
            .state
            .last_warn
            .is_some_and(|t| now.saturating_sub(t) < interval_secs)
        {
            return None;
        }
        self.state.last_warn = Some(now);
        Some(BudgetWarning {
            rejected: std::mem::take(&mut self.state.unwarned_rejections),
            live: self.state.series.len(),
            limit: self.node.max_series.load(Ordering::Relaxed),
        })
    }

    fn expire(&mut self, now: u32, ttl: u32) -> usize {
        let before = self.state.series.len();
        let NodeState {
            series,
            metric_live,
            ..
        } = &mut *self.state;
        series.retain(|_, slot| {
            let keep = now.saturating_sub(slot.last_seen) < ttl;
            if !keep {
                metric_live[slot.metric as usize] -= 1;
            }
            keep
        });
        let expired = before - series.len();
        if expired > 0 {
            self.budgets.total.fetch_sub(expired, Ordering::AcqRel);
            self.node.live.store(series.len(), Ordering::Relaxed);
        }
        expired
    }

    /// Live series of this node.
    pub fn live(&self) -> usize {
        self.state.series.len()
    }
}

#[cfg(test)]
mod tests;
