//! GPU metrics. The agent reads GPUs through a [`GpuSource`]; the real one
//! is NVML (`nvml-wrapper`, which loads `libnvidia-ml.so.1` at run time, so
//! the agent builds and starts on machines without a GPU or driver).
//!
//! Series (labels `gpu` = index, `UUID`, `modelName`, as dcgm-exporter
//! names them, so both sources join):
//!
//! | metric | unit |
//! |---|---|
//! | `gpu_utilization_percent`, `gpu_memory_utilization_percent` | % |
//! | `gpu_memory_used_bytes`, `gpu_memory_total_bytes` | bytes |
//! | `gpu_temperature_celsius` | °C |
//! | `gpu_power_watts` | W |
//! | `gpu_energy_joules_total` | J since driver load |
//! | `gpu_sm_clock_hz`, `gpu_memory_clock_hz` | Hz |
//! | `gpu_sm_clock_max_hz` | Hz (the SM clock's maximum) |
//! | `gpu_throttle_reasons` | NVML's bitmask |
//! | `gpu_ecc_errors_total{type="corrected"\|"uncorrected"}` | volatile count |
//! | `gpu_pcie_replays_total` | count |
//! | `gpu_nvlink_errors_total{link, counter}` | per active link |
//! | `gpu_xid_error` | the XID code, one point per event |
//!
//! plus `gpu_up` (no GPU labels): 1 when NVML is loaded and sees at least
//! one GPU, 0 otherwise. A field a GPU does not support is left out.
//!
//! Which job uses which GPU: [`processes`] sums the processes NVML lists
//! per GPU and owner, the owner read from each process's cgroup by
//! [`owner`].
//!
//! [`poll::run_gpu`] is the task that polls a source and spools what it reads.
//!
//! The NVML implementation has not been run on a GPU here (no GPU on the
//! build machine); everything around it is tested with a fake source.

use horizon_shared::proto::MetricType;

use crate::record::OwnedPoint;

#[cfg(feature = "nvml")]
mod nvml;
pub mod owner;
pub mod poll;
pub mod processes;
mod source;

pub use source::{GpuInfo, GpuProcess, GpuProcesses, GpuReading, GpuSnapshot, GpuSource, XidEvent};

/// The NVML metrics that are counters: NVML's cumulative energy and error
/// counts (since the driver loaded; a reload starts them again).
const COUNTERS: [&str; 4] = [
    "gpu_energy_joules_total",
    "gpu_ecc_errors_total",
    "gpu_pcie_replays_total",
    "gpu_nvlink_errors_total",
];

/// The type of an NVML metric: [`COUNTERS`] are counters, every other
/// reading a gauge (`gpu_xid_error`, whose value is an XID code, too).
pub fn nvml_metric_type(metric: &str) -> MetricType {
    if COUNTERS.contains(&metric) {
        MetricType::Counter
    } else {
        MetricType::Gauge
    }
}

/// Turns a snapshot into points at `time_unix_nano`, with `gpu_up`.
pub fn to_points(snap: &Result<GpuSnapshot, String>, time_unix_nano: i64) -> Vec<OwnedPoint> {
    let up = matches!(snap, Ok(s) if !s.gpus.is_empty());
    let mut out = vec![OwnedPoint {
        metric: "gpu_up".into(),
        metric_type: MetricType::Gauge,
        labels: vec![],
        time_unix_nano,
        value: if up { 1.0 } else { 0.0 },
    }];
    let Ok(snap) = snap else { return out };
    let labels = |gpu: usize| -> Option<Vec<(String, String)>> {
        let g = snap.gpus.get(gpu)?;
        Some(vec![
            ("UUID".into(), g.uuid.clone()),
            ("gpu".into(), g.index.to_string()),
            ("modelName".into(), g.model.clone()),
        ])
    };
    for r in &snap.readings {
        let Some(mut l) = labels(r.gpu) else { continue };
        if !r.value.is_finite() {
            continue;
        }
        l.extend(r.labels.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        out.push(OwnedPoint {
            metric: r.metric.into(),
            metric_type: nvml_metric_type(r.metric),
            labels: l,
            time_unix_nano,
            value: r.value,
        });
    }
    for x in &snap.xids {
        let Some(l) = labels(x.gpu) else { continue };
        out.push(OwnedPoint {
            metric: "gpu_xid_error".into(),
            metric_type: MetricType::Gauge,
            labels: l,
            time_unix_nano: x.time_unix_nano,
            value: x.xid as f64,
        });
    }
    out
}

/// No GPU support compiled in, or NVML could not be loaded.
#[derive(Debug)]
pub struct NoGpu(pub String);

impl GpuSource for NoGpu {
    fn poll(&mut self) -> Result<GpuSnapshot, String> {
        Err(self.0.clone())
    }
}

/// Opens NVML, or explains why not.
pub fn open_nvml() -> Box<dyn GpuSource> {
    #[cfg(feature = "nvml")]
    {
        match nvml::NvmlSource::open() {
            Ok(s) => Box::new(s),
            Err(e) => Box::new(NoGpu(e)),
        }
    }
    #[cfg(not(feature = "nvml"))]
    {
        Box::new(NoGpu("built without the nvml feature".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_carry_the_gpu_labels_and_gpu_up() {
        let snap = Ok(GpuSnapshot {
            gpus: vec![GpuInfo {
                index: 3,
                uuid: "GPU-abc".into(),
                model: "NVIDIA H100".into(),
            }],
            readings: vec![
                GpuReading {
                    gpu: 0,
                    metric: "gpu_temperature_celsius",
                    labels: vec![],
                    value: 45.0,
                },
                GpuReading {
                    gpu: 0,
                    metric: "gpu_ecc_errors_total",
                    labels: vec![("type", "corrected".into())],
                    value: 2.0,
                },
                GpuReading {
                    gpu: 0,
                    metric: "gpu_power_watts",
                    labels: vec![],
                    value: f64::NAN,
                },
            ],
            xids: vec![XidEvent {
                gpu: 0,
                xid: 79,
                time_unix_nano: 5,
            }],
            processes: vec![],
        });
        let p = to_points(&snap, 7);
        assert_eq!(p.len(), 4);
        assert_eq!((p[0].metric.as_str(), p[0].value), ("gpu_up", 1.0));
        assert_eq!(
            p[1].labels,
            vec![
                ("UUID".to_owned(), "GPU-abc".to_owned()),
                ("gpu".to_owned(), "3".to_owned()),
                ("modelName".to_owned(), "NVIDIA H100".to_owned()),
            ]
        );
        assert_eq!(p[2].labels[3], ("type".to_owned(), "corrected".to_owned()));
        assert_eq!(
            (p[3].metric.as_str(), p[3].value, p[3].time_unix_nano),
            ("gpu_xid_error", 79.0, 5)
        );
        let types: Vec<MetricType> = p.iter().map(|p| p.metric_type).collect();
        assert_eq!(
            types,
            [
                MetricType::Gauge,
                MetricType::Gauge,
                MetricType::Counter,
                MetricType::Gauge
            ]
        );
    }

    #[test]
    fn every_cumulative_nvml_metric_is_a_counter_and_no_other() {
        // The names the NVML source reads, from its source text: those
        // named `_total` (cumulative, by the naming convention the source
        // follows) are counters, the others gauges.
        let source = include_str!("gpu/nvml.rs");
        let names: Vec<&str> = source
            .split('"')
            .filter(|s| s.starts_with("gpu_") && !s.contains(' '))
            .collect();
        assert!(names.len() >= 14, "{names:?}");
        for name in names {
            let want = if name.ends_with("_total") {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            assert_eq!(nvml_metric_type(name), want, "{name}");
        }
    }

    #[test]
    fn no_driver_is_gpu_up_zero() {
        let p = to_points(&NoGpu("no driver".into()).poll(), 1);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].metric.as_str(), p[0].value), ("gpu_up", 0.0));
    }
}
