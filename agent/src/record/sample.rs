//! Synthetic scrapes shaped like a real node's (for the spool's size test,
//! its benchmark and the catch-up measurement): dcgm-exporter's exposition
//! of 8 GPUs × 60 fields with its six labels, and a node_exporter one.
//! Values change every scrape the way those exporters' do: most fields
//! are integers (clocks, temperatures, percentages, bytes), some carry
//! three decimals (power), counters grow.

use horizon_shared::proto::MetricType;

use super::OwnedPoint;

/// A small deterministic generator (xorshift64*), so runs compare.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn labels(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// dcgm-exporter's exposition of `gpus` GPUs × 60 fields at `time`
/// (Unix ns); `tick` is the scrape's number (counters grow with it).
pub fn dcgm_scrape(gpus: u32, time: i64, tick: u64, rng: &mut Rng) -> Vec<OwnedPoint> {
    let mut out = Vec::with_capacity(gpus as usize * 60);
    for field in 0..60u32 {
        let (metric, metric_type) = match field {
            0..5 => (format!("DCGM_FI_PROF_COUNTER_{field}"), MetricType::Counter),
            _ => (format!("DCGM_FI_DEV_FIELD_{field}"), MetricType::Gauge),
        };
        for gpu in 0..gpus {
            let value = match field {
                // Counters: energy (mJ), bytes, errors.
                0..5 => (tick * 250_000 + rng.below(5000) + u64::from(gpu) * 1_000_000_007) as f64,
                // Power and the like: three decimals.
                5..20 => (60_000 + rng.below(300_000)) as f64 / 1000.0,
                // Clocks, temperatures, percentages, memory: integers.
                _ => rng.below(u64::from(field) * 100) as f64,
            };
            out.push(OwnedPoint {
                metric: metric.clone(),
                metric_type,
                labels: labels(&[
                    ("gpu", gpu.to_string()),
                    (
                        "UUID",
                        format!("GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e{gpu:02}"),
                    ),
                    ("device", format!("nvidia{gpu}")),
                    ("modelName", "NVIDIA H100 80GB HBM3".into()),
                    ("Hostname", "gpu-node-017".into()),
                    ("DCGM_FI_DRIVER_VERSION", "550.54.15".into()),
                ]),
                time_unix_nano: time,
                value,
            });
        }
    }
    out
}

/// A node_exporter exposition of about 440 points at `time`.
pub fn node_scrape(time: i64, tick: u64, rng: &mut Rng) -> Vec<OwnedPoint> {
    let mut out = Vec::new();
    let mut push = |metric: &str, t: MetricType, l: Vec<(String, String)>, value: f64| {
        out.push(OwnedPoint {
            metric: metric.to_owned(),
            metric_type: t,
            labels: l,
            time_unix_nano: time,
            value,
        });
    };
    let t = tick as f64;
    for cpu in 0..16 {
        for mode in [
            "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
        ] {
            let v = t * 2.5 + rng.below(100) as f64 / 100.0;
            push(
                "node_cpu_seconds_total",
                MetricType::Counter,
                labels(&[("cpu", cpu.to_string()), ("mode", mode.into())]),
                v,
            );
        }
    }
    for i in 0..60 {
        let v = (rng.below(1 << 30) * 4096) as f64;
        push(
            &format!("node_memory_field_{i}_bytes"),
            MetricType::Gauge,
            vec![],
            v,
        );
    }
    for dev in ["eth0", "eth1", "lo", "ib0"] {
        for i in 0..16 {
            let v = (tick * 1_000_000 + rng.below(1_000_000)) as f64;
            push(
                &format!("node_network_field_{i}_total"),
                MetricType::Counter,
                labels(&[("device", dev.into())]),
                v,
            );
        }
    }
    for (dev, mp) in [
        ("/dev/nvme0n1p2", "/"),
        ("/dev/nvme0n1p1", "/boot/efi"),
        ("/dev/nvme1n1", "/data"),
        ("tmpfs", "/run"),
        ("tmpfs", "/dev/shm"),
    ] {
        for i in 0..7 {
            let v = (rng.below(1 << 28) * 4096) as f64;
            push(
                &format!("node_filesystem_field_{i}"),
                MetricType::Gauge,
                labels(&[
                    ("device", dev.into()),
                    ("fstype", "ext4".into()),
                    ("mountpoint", mp.into()),
                ]),
                v,
            );
        }
    }
    for dev in ["nvme0n1", "nvme1n1", "sda"] {
        for i in 0..17 {
            let v = (tick * 10_000 + rng.below(10_000)) as f64;
            push(
                &format!("node_disk_field_{i}_total"),
                MetricType::Counter,
                labels(&[("device", dev.into())]),
                v,
            );
        }
    }
    for i in 0..100 {
        let v = rng.below(100_000) as f64;
        push(
            &format!("node_misc_field_{i}"),
            MetricType::Gauge,
            vec![],
            v,
        );
    }
    out
}
