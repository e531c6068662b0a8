//! Writes one hour of synthetic raw objects, as relays would, for measuring
//! the compactor: `--objects N` objects from `--relays R` relays, `--nodes`
//! × `--series` series with a point every `--step-secs`, and a fraction
//! `--dup` of every object's points written again by another relay (failover
//! resends).
//!
//! ```text
//! cargo run --release -p horizon-compactor --example synthetic_hour -- \
//!     --dir /tmp/bench/objects --hour 2025-06-01T10 --nodes 500 --series 100 --step-secs 10
//! ```

use std::path::PathBuf;

use clap::Parser;
use horizon_shared::layout::{Hour, raw_object_key};
use horizon_shared::proto::{Label, MetricType};
use horizon_shared::raw::{RawPoint, encode_raw_objects};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value = "2025-06-01T10")]
    hour: String,
    #[arg(long, default_value_t = 500)]
    nodes: usize,
    #[arg(long, default_value_t = 100)]
    series: usize,
    #[arg(long, default_value_t = 10)]
    step_secs: i64,
    /// Objects per relay (the hour is cut into this many time slices).
    #[arg(long, default_value_t = 120)]
    objects: usize,
    #[arg(long, default_value_t = 4)]
    relays: usize,
    /// Fraction of points written a second time by the next relay.
    #[arg(long, default_value_t = 0.05)]
    dup: f64,
}

/// The type of series `s`'s metric: one metric in twelve a counter, the
/// others gauges (as `late_data` makes them too).
fn metric_type(s: usize) -> MetricType {
    if s.is_multiple_of(12) {
        MetricType::Counter
    } else {
        MetricType::Gauge
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let hour = Hour::parse(&a.hour)?;
    let slices = a.objects.max(1) as i64;
    let slice_secs = (3600 / slices).max(1);
    let (mut rows, mut bytes_total, mut n_objects) = (0usize, 0usize, 0usize);
    for slice in 0..slices {
        let (t0, t1) = (slice * slice_secs, ((slice + 1) * slice_secs).min(3600));
        for r in 0..a.relays {
            // Relay r serves nodes n with n % relays == r.
            let mut points = Vec::new();
            let mut dups = Vec::new();
            for n in (r..a.nodes).step_by(a.relays) {
                for s in 0..a.series {
                    let labels = vec![
                        Label {
                            key: "gpu".into(),
                            value: (s % 8).to_string(),
                        },
                        Label {
                            key: "kind".into(),
                            value: format!("k{}", s / 8),
                        },
                    ];
                    let mut t = t0 - t0 % a.step_secs;
                    while t < t1 {
                        if t >= t0 {
                            let time = (hour.start_unix_secs + t) * 1_000_000_000 + n as i64;
                            let p = RawPoint {
                                node: format!("gpu-node-{n:05}"),
                                metric: format!("dcgm_metric_{}", s % 12),
                                labels: labels.clone(),
                                time,
                                value: (n * 7 + s) as f64 + t as f64 * 0.01,
                                received_at: time + 2_000_000,
                                metric_type: metric_type(s),
                            };
                            if ((n * 31 + s * 17 + t as usize) % 1000) as f64 / 1000.0 < a.dup {
                                let mut d = p.clone();
                                d.received_at += 5_000_000_000;
                                dups.push(d);
                            }
                            points.push(p);
                        }
                        t += a.step_secs;
                    }
                }
            }
            for (relay, pts, seq) in [
                (r, &points, slice as u64),
                ((r + 1) % a.relays, &dups, 1_000_000 + slice as u64),
            ] {
                if pts.is_empty() {
                    continue;
                }
                for (h, n, bytes) in encode_raw_objects(pts, &format!("relay-{relay}"))? {
                    let key =
                        raw_object_key("raw", h, &format!("relay-{relay}"), 1_700_000_000_000, seq);
                    let path = a.dir.join(key);
                    std::fs::create_dir_all(path.parent().expect("parent"))?;
                    std::fs::write(&path, &bytes)?;
                    rows += n;
                    bytes_total += bytes.len();
                    n_objects += 1;
                }
            }
        }
    }
    println!(
        "{n_objects} raw objects, {rows} rows, {:.1} MiB in {}",
        bytes_total as f64 / 1048576.0,
        a.dir.display()
    );
    Ok(())
}
