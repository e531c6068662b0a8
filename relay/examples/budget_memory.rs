//! Measures the memory of budget state: 1,000 nodes x 10,000 series each.
//!
//! `cargo run --release -p horizon-relay --example budget_memory [NODES] [SERIES]`
//!
//! Prints resident memory before and after filling the budgets (Linux,
//! from /proc/self/statm) and the cost per series.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use horizon_relay::budget::{Admission, Budgets};
use horizon_relay::config::BudgetSettings;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let series: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let budgets = Budgets::new(BudgetSettings {
        max_series_per_node: series as usize,
        max_series_per_metric: None,
        max_series_total: (nodes * series) as usize,
        series_ttl: Duration::from_secs(600),
        metrics_top_nodes: 20,
        overrides: BTreeMap::new(),
    });
    let before = rss_bytes();
    let started = Instant::now();
    let mut handles = Vec::new();
    for n in 0..nodes {
        let node = budgets.node(&format!("gpu-node-{n:05}.cluster.example"));
        {
            let mut g = budgets.lock(&node);
            for s in 0..series {
                // 40 metrics per node, series hashes spread like real ones.
                let h = (n << 32 | s).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                assert_eq!(g.admit(h, s % 40, 0), Admission::New);
            }
        }
        handles.push(node);
    }
    let fill = started.elapsed();
    let after = rss_bytes();
    let total = nodes * series;
    println!(
        "nodes {nodes}, series per node {series}, live series {}",
        budgets.total()
    );
    println!(
        "filled in {:.2} s ({:.1} M admissions/s)",
        fill.as_secs_f64(),
        total as f64 / fill.as_secs_f64() / 1e6
    );
    println!(
        "resident memory: {:.1} MiB before, {:.1} MiB after, {:.1} bytes per series",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / total as f64
    );
}
