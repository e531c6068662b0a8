//! Writes hours of synthetic raw objects shaped like a GPU fleet, for the
//! rollup benchmarks (docs/benchmarks.md, "Rollups"): per node, dcgm-exporter's
//! utilisation, temperature, power and energy of `--gpus` GPUs every second
//! (its label set: `gpu`, `UUID`, `device`, `modelName`, `Hostname`), and
//! `--node-series` node_exporter series every 10 s (CPU-seconds counters and
//! gauges). Values move as such series do (a random walk per GPU, integer
//! percentages and degrees, power with two decimals, counters that only
//! grow), from a fixed seed. The last GPU of node 0 idles all the time.
//!
//! ```text
//! cargo run --release -p horizon-compactor --example synthetic_fleet -- \
//!     --dir /tmp/fleet/objects --from 2026-09-01T00 --hours 720 --nodes 2
//! ```

use std::path::PathBuf;

use clap::Parser;
use horizon_shared::layout::{Hour, raw_object_key};
use horizon_shared::proto::Label;
use horizon_shared::proto::MetricType::{Counter, Gauge};
use horizon_shared::raw::{RawPoint, encode_raw_objects};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    dir: PathBuf,
    /// First hour.
    #[arg(long, default_value = "2026-09-01T00")]
    from: String,
    /// Hours to write.
    #[arg(long, default_value_t = 24)]
    hours: i64,
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    #[arg(long, default_value_t = 8)]
    gpus: usize,
    #[arg(long, default_value_t = 40)]
    node_series: usize,
    /// Raw objects per hour (flushes of one relay).
    #[arg(long, default_value_t = 6)]
    objects: i64,
}

/// splitmix64: a small, fixed-seed generator (no dependency for a benchmark).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// One GPU's state as the seconds go by.
struct Gpu {
    util: f64,
    temp: f64,
    energy_mj: f64,
    idle: bool,
}

fn label(k: &str, v: String) -> Label {
    Label {
        key: k.into(),
        value: v,
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let first = Hour::parse(&a.from)?;
    let mut rng = Rng(42);
    let mut gpus: Vec<Vec<Gpu>> = (0..a.nodes)
        .map(|n| {
            (0..a.gpus)
                .map(|g| Gpu {
                    util: 50.0,
                    temp: 45.0,
                    energy_mj: 1e9,
                    idle: n == 0 && g + 1 == a.gpus,
                })
                .collect()
        })
        .collect();
    let mut cpu = vec![vec![0.0f64; a.node_series]; a.nodes];
    let (mut rows, mut bytes_total, mut objects) = (0usize, 0usize, 0usize);
    let slice = 3600 / a.objects.max(1);
    for h in 0..a.hours {
        let hour = Hour::of_secs(first.start_unix_secs + h * 3600);
        for o in 0..a.objects.max(1) {
            let mut points = Vec::new();
            for t in o * slice..((o + 1) * slice).min(3600) {
                let secs = hour.start_unix_secs + t;
                for n in 0..a.nodes {
                    let host = format!("gpu-node-{n:05}");
                    let time = secs * 1_000_000_000 + n as i64 * 1_000;
                    for (g, gpu) in gpus[n].iter_mut().enumerate() {
                        if gpu.idle {
                            gpu.util = (rng.unit().abs() * 2.0).floor();
                        } else {
                            gpu.util = (gpu.util + rng.unit() * 6.0).clamp(0.0, 100.0);
                        }
                        let target = 35.0 + gpu.util * 0.45;
                        gpu.temp += (target - gpu.temp) * 0.02 + rng.unit() * 0.3;
                        let power = 60.0 + gpu.util * 6.3 + rng.unit() * 4.0;
                        gpu.energy_mj += power * 1000.0;
                        let labels = vec![
                            label("Hostname", host.clone()),
                            label(
                                "UUID",
                                format!("GPU-{n:04x}{g:04x}-5e1d-4c2b-9a7f-0c5d1e2f3a4b"),
                            ),
                            label("device", format!("nvidia{g}")),
                            label("gpu", g.to_string()),
                            label("modelName", "NVIDIA H100 80GB HBM3".into()),
                        ];
                        for (metric, value, metric_type) in [
                            ("DCGM_FI_DEV_GPU_UTIL", gpu.util.round(), Gauge),
                            ("DCGM_FI_DEV_GPU_TEMP", gpu.temp.round(), Gauge),
                            (
                                "DCGM_FI_DEV_POWER_USAGE",
                                (power * 100.0).round() / 100.0,
                                Gauge,
                            ),
                            (
                                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                                gpu.energy_mj.round(),
                                Counter,
                            ),
                        ] {
                            points.push(RawPoint {
                                node: host.clone(),
                                metric: metric.into(),
                                labels: labels.clone(),
                                time,
                                value,
                                received_at: time + 2_000_000,
                                metric_type,
                            });
                        }
                    }
                    if t % 10 != 0 {
                        continue;
                    }
                    for (s, c) in cpu[n].iter_mut().enumerate() {
                        let (metric, labels, value, metric_type) = if s < a.node_series * 4 / 5 {
                            *c += 10.0
                                * (0.5 + rng.unit() * 0.5)
                                * if s % 2 == 0 { 0.9 } else { 0.1 };
                            let mode = if s % 2 == 0 { "idle" } else { "user" };
                            (
                                "node_cpu_seconds_total",
                                vec![
                                    label("cpu", (s / 2).to_string()),
                                    label("mode", mode.into()),
                                ],
                                (*c * 100.0).round() / 100.0,
                                Counter,
                            )
                        } else {
                            *c = (*c + rng.unit() * 1e6).abs();
                            (
                                "node_memory_bytes",
                                vec![label("kind", format!("k{s}"))],
                                (*c / 4096.0).round() * 4096.0,
                                Gauge,
                            )
                        };
                        points.push(RawPoint {
                            node: host.clone(),
                            metric: metric.into(),
                            labels,
                            time,
                            value,
                            received_at: time + 2_000_000,
                            metric_type,
                        });
                    }
                }
            }
            for (hr, n, bytes) in encode_raw_objects(&points, "relay-0")? {
                let key = raw_object_key(
                    "raw",
                    hr,
                    "relay-0",
                    1_700_000_000_000,
                    (h * 1000 + o) as u64,
                );
                let path = a.dir.join(key);
                std::fs::create_dir_all(path.parent().expect("parent"))?;
                std::fs::write(&path, &bytes)?;
                rows += n;
                bytes_total += bytes.len();
                objects += 1;
            }
        }
    }
    println!(
        "{objects} raw objects, {rows} rows, {:.1} MiB in {}",
        bytes_total as f64 / 1048576.0,
        a.dir.display()
    );
    Ok(())
}
