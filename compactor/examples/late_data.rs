//! Writes late data for measuring the compactor (docs/benchmarks.md, "Late
//! data"), with the relays' own encoder:
//!
//! - `late`: one raw object in an hour's partition, as a relay writes it:
//!   `--rows` points of nodes the hour has not seen (`--kind new`), or
//!   resends of `synthetic_hour`'s points received later (`--kind resend`),
//!   or what a relay's death leaves (`--kind failover`: the nodes relay-0
//!   served resend their unacked window, the 30 s before second 1800, the
//!   same values through another relay 35 s later; `--rows` is ignored);
//! - `replay`: `--hours` hours of a fleet of `--nodes` nodes, either on
//!   time (one object per hour per relay flush) or, for the nodes from
//!   `--first-node` on, as a replay after an outage: flushes of
//!   `--flush-rows` rows that each span every hour, written as the relay now
//!   writes them (`--layout grouped`: one late object per flush) or as it
//!   did before (`--layout per-hour`: one object per hour per flush).
//!
//! ```text
//! cargo run --release -p horizon-compactor --example late_data -- late \
//!     --dir /tmp/bench/objects --hour 2025-06-01T10 --rows 1 --kind new
//! ```

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use horizon_shared::layout::{Hour, late_object_key, raw_object_key};
use horizon_shared::proto::{Label, MetricType};
use horizon_shared::raw::{RawPoint, encode_flush};

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    New,
    Resend,
    Failover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Layout {
    OnTime,
    Grouped,
    PerHour,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One late raw object for an hour.
    Late {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "2025-06-01T10")]
        hour: String,
        #[arg(long, default_value_t = 1)]
        rows: usize,
        #[arg(long, value_enum, default_value = "new")]
        kind: Kind,
        #[arg(long, default_value_t = 1)]
        seq: u64,
    },
    /// Hours of a fleet, on time or replayed late.
    Replay {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "2025-06-01T00")]
        start: String,
        #[arg(long, default_value_t = 24)]
        hours: i64,
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Nodes from here to `--nodes` only.
        #[arg(long, default_value_t = 0)]
        first_node: usize,
        #[arg(long, default_value_t = 10)]
        series: usize,
        #[arg(long, default_value_t = 60)]
        step_secs: i64,
        #[arg(long, value_enum, default_value = "on-time")]
        layout: Layout,
        /// Rows per relay flush (the relay's `parquet.flush_rows`).
        #[arg(long, default_value_t = 200_000)]
        flush_rows: usize,
    },
}

/// The point of node `n`, series `s` at second `t` of `hour` (as
/// `synthetic_hour` makes them), received `recv` ns after its time.
fn point(hour: Hour, n: usize, s: usize, t: i64, recv: i64) -> RawPoint {
    let time = (hour.start_unix_secs + t) * 1_000_000_000 + n as i64;
    RawPoint {
        node: format!("gpu-node-{n:05}"),
        metric: format!("dcgm_metric_{}", s % 12),
        labels: vec![
            Label {
                key: "gpu".into(),
                value: (s % 8).to_string(),
            },
            Label {
                key: "kind".into(),
                value: format!("k{}", s / 8),
            },
        ],
        time,
        value: (n * 7 + s) as f64 + t as f64 * 0.01,
        received_at: time + recv,
        // As `synthetic_hour`: one metric in twelve a counter.
        metric_type: if s.is_multiple_of(12) {
            MetricType::Counter
        } else {
            MetricType::Gauge
        },
    }
}

/// Encodes `points` as one flush: per-hour objects, or (`late`) one late object.
fn write_flush(
    dir: &Path,
    relay: &str,
    seq: u64,
    points: &[RawPoint],
    late: bool,
) -> anyhow::Result<usize> {
    let rows = points.iter().map(RawPoint::row).collect();
    let everything = Hour::of_secs(i64::MAX / 2_000_000_000);
    let out = encode_flush(rows, relay, false, late.then_some(everything))?;
    let mut n = 0;
    let mut put = |key: String, bytes: &[u8]| -> anyhow::Result<()> {
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().expect("parent"))?;
        std::fs::write(&path, bytes)?;
        n += 1;
        Ok(())
    };
    if let Some((_, bytes)) = out.late {
        put(
            late_object_key("raw", relay, 1_700_000_000_000, seq),
            &bytes,
        )?;
    }
    for (h, _, bytes) in out.hours {
        put(
            raw_object_key("raw", h, relay, 1_700_000_000_000, seq),
            &bytes,
        )?;
    }
    Ok(n)
}

fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Late {
            dir,
            hour,
            rows,
            kind,
            seq,
        } => {
            let hour = Hour::parse(&hour)?;
            let points: Vec<RawPoint> = if kind == Kind::Failover {
                // synthetic_hour's defaults: 300 nodes, 100 series, a point
                // every 10 s; relay r serves the nodes n with n % 4 == r.
                (0..300)
                    .step_by(4)
                    .flat_map(|n| (0..100).map(move |s| (n, s)))
                    .flat_map(|(n, s)| {
                        (1770..1800)
                            .step_by(10)
                            .map(move |t| point(hour, n, s, t, 35_000_000_000))
                    })
                    .collect()
            } else {
                (0..rows)
                    .map(|i| match kind {
                        // Nodes from 90000 on: never in synthetic_hour's data.
                        Kind::New => point(
                            hour,
                            90_000 + i / 3600,
                            i % 100,
                            (i % 3600) as i64,
                            2_000_000,
                        ),
                        // Node 0, series 0: in the data every 10 s, received 1 min later.
                        Kind::Resend | Kind::Failover => {
                            point(hour, 0, 0, (i as i64 * 10) % 3600, 60_000_000_000)
                        }
                    })
                    .collect()
            };
            let rows = points.len();
            let n = write_flush(&dir, "relay-late", 2_000_000 + seq, &points, false)?;
            println!("{n} object(s), {rows} late rows in {}", dir.display());
        }
        Cmd::Replay {
            dir,
            start,
            hours,
            nodes,
            first_node,
            series,
            step_secs,
            layout,
            flush_rows,
        } => {
            let start = Hour::parse(&start)?;
            let (mut rows, mut objects, mut flushes) = (0usize, 0usize, 0u64);
            let mut flush: Vec<RawPoint> = Vec::with_capacity(flush_rows);
            let mut emit = |flush: &mut Vec<RawPoint>, seq: u64| -> anyhow::Result<()> {
                if !flush.is_empty() {
                    objects += write_flush(&dir, "relay-0", seq, flush, layout == Layout::Grouped)?;
                    rows += flush.len();
                    flush.clear();
                }
                Ok(())
            };
            // On time: hour by hour. Replayed: every agent resends its spool
            // at once, so each flush holds points of every hour.
            let order: Vec<(i64, i64)> = match layout {
                Layout::OnTime => (0..hours)
                    .flat_map(|h| (0..3600 / step_secs).map(move |k| (h, k * step_secs)))
                    .collect(),
                _ => (0..3600 / step_secs)
                    .flat_map(|k| (0..hours).map(move |h| (h, k * step_secs)))
                    .collect(),
            };
            for (h, t) in order {
                let hour = Hour {
                    start_unix_secs: start.start_unix_secs + h * 3600,
                };
                for n in first_node..nodes {
                    for s in 0..series {
                        flush.push(point(hour, n, s, t, 2_000_000));
                    }
                }
                if flush.len() >= flush_rows {
                    flushes += 1;
                    emit(&mut flush, flushes)?;
                }
            }
            flushes += 1;
            emit(&mut flush, flushes)?;
            println!(
                "{flushes} flushes, {objects} objects, {rows} rows in {}",
                dir.display()
            );
        }
    }
    Ok(())
}
