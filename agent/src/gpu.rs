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
//! [`poll::run_gpu`] is the task that polls a source and spools what it reads.
//!
//! The NVML implementation has not been run on a GPU here (no GPU on the
//! build machine); everything around it is tested with a fake source.

use crate::record::OwnedPoint;

pub mod poll;

/// Identity of one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// NVML index.
    pub index: u32,
    /// `GPU-...` UUID.
    pub uuid: String,
    /// Model name, e.g. `NVIDIA H100 80GB HBM3`.
    pub model: String,
}

/// One reading of one field of one GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuReading {
    /// Which GPU (index into [`GpuSnapshot::gpus`]).
    pub gpu: usize,
    /// Metric name.
    pub metric: &'static str,
    /// Labels beyond the GPU's own.
    pub labels: Vec<(&'static str, String)>,
    /// Value.
    pub value: f64,
}

/// An XID error event.
#[derive(Debug, Clone, PartialEq)]
pub struct XidEvent {
    /// Which GPU (index into [`GpuSnapshot::gpus`]).
    pub gpu: usize,
    /// The XID code.
    pub xid: u64,
    /// When it was seen, Unix ns.
    pub time_unix_nano: i64,
}

/// What one poll of the source returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSnapshot {
    /// The GPUs.
    pub gpus: Vec<GpuInfo>,
    /// Their readings.
    pub readings: Vec<GpuReading>,
    /// XID events since the last poll.
    pub xids: Vec<XidEvent>,
}

/// A source of GPU readings.
pub trait GpuSource: Send {
    /// Reads every GPU. An error means the source is unusable right now
    /// (no driver, driver unloaded); the agent exports `gpu_up 0`.
    fn poll(&mut self) -> Result<GpuSnapshot, String>;
}

/// Turns a snapshot into points at `time_unix_nano`, with `gpu_up`.
pub fn to_points(snap: &Result<GpuSnapshot, String>, time_unix_nano: i64) -> Vec<OwnedPoint> {
    let up = matches!(snap, Ok(s) if !s.gpus.is_empty());
    let mut out = vec![OwnedPoint {
        metric: "gpu_up".into(),
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
            labels: l,
            time_unix_nano,
            value: r.value,
        });
    }
    for x in &snap.xids {
        let Some(l) = labels(x.gpu) else { continue };
        out.push(OwnedPoint {
            metric: "gpu_xid_error".into(),
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

#[cfg(feature = "nvml")]
mod nvml {
    use std::sync::mpsc;

    use nvml_wrapper::Nvml;
    use nvml_wrapper::bitmasks::event::EventTypes;
    use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
    use nvml_wrapper::enum_wrappers::nv_link::ErrorCounter;
    use nvml_wrapper::enums::event::XidError;

    use super::{GpuInfo, GpuReading, GpuSnapshot, GpuSource, XidEvent};

    /// GPUs through NVML.
    pub struct NvmlSource {
        nvml: Nvml,
        xids: mpsc::Receiver<(String, u64, i64)>,
    }

    impl std::fmt::Debug for NvmlSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("NvmlSource")
        }
    }

    impl NvmlSource {
        pub fn open() -> Result<Self, String> {
            let nvml = Nvml::init().map_err(|e| format!("NVML is not available: {e}"))?;
            let (tx, rx) = mpsc::channel();
            // XID events: a thread with its own NVML handle waits on an event set.
            let spawned = std::thread::Builder::new()
                .name("nvml-xid".into())
                .spawn(move || xid_loop(tx));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the XID event thread");
            }
            Ok(Self { nvml, xids: rx })
        }
    }

    fn xid_loop(tx: mpsc::Sender<(String, u64, i64)>) {
        let Ok(nvml) = Nvml::init() else { return };
        let Ok(count) = nvml.device_count() else {
            return;
        };
        let Ok(mut set) = nvml.create_event_set() else {
            return;
        };
        for i in 0..count {
            if let Ok(d) = nvml.device_by_index(i) {
                match d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                    Ok(s) => set = s,
                    Err(e) => {
                        tracing::warn!(gpu = i, error = %e.error, "XID events unavailable for this GPU");
                        let Ok(s) = nvml.create_event_set() else {
                            return;
                        };
                        set = s;
                    }
                }
            }
        }
        loop {
            match set.wait(1000) {
                Ok(ev) => {
                    let xid = match ev.event_data {
                        Some(XidError::Value(v)) => v,
                        _ => 0,
                    };
                    let uuid = ev.device.uuid().unwrap_or_default();
                    if tx
                        .send((uuid, xid, horizon_shared::clock::unix_nanos_now()))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(nvml_wrapper::error::NvmlError::Timeout) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "XID event wait failed; XID events stop");
                    return;
                }
            }
        }
    }

    impl GpuSource for NvmlSource {
        fn poll(&mut self) -> Result<GpuSnapshot, String> {
            let count = self
                .nvml
                .device_count()
                .map_err(|e| format!("NVML device count: {e}"))?;
            let mut snap = GpuSnapshot::default();
            for i in 0..count {
                let Ok(d) = self.nvml.device_by_index(i) else {
                    continue;
                };
                let g = snap.gpus.len();
                snap.gpus.push(GpuInfo {
                    index: i,
                    uuid: d.uuid().unwrap_or_else(|_| format!("index-{i}")),
                    model: d.name().unwrap_or_else(|_| "unknown".into()),
                });
                let mut put =
                    |metric: &'static str, labels: Vec<(&'static str, String)>, v: Option<f64>| {
                        if let Some(value) = v {
                            snap.readings.push(GpuReading {
                                gpu: g,
                                metric,
                                labels,
                                value,
                            });
                        }
                    };
                let u = d.utilization_rates().ok();
                put(
                    "gpu_utilization_percent",
                    vec![],
                    u.as_ref().map(|u| f64::from(u.gpu)),
                );
                put(
                    "gpu_memory_utilization_percent",
                    vec![],
                    u.as_ref().map(|u| f64::from(u.memory)),
                );
                let m = d.memory_info().ok();
                put(
                    "gpu_memory_used_bytes",
                    vec![],
                    m.as_ref().map(|m| m.used as f64),
                );
                put(
                    "gpu_memory_total_bytes",
                    vec![],
                    m.as_ref().map(|m| m.total as f64),
                );
                put(
                    "gpu_temperature_celsius",
                    vec![],
                    d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
                );
                put(
                    "gpu_power_watts",
                    vec![],
                    d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                );
                put(
                    "gpu_energy_joules_total",
                    vec![],
                    d.total_energy_consumption()
                        .ok()
                        .map(|mj| mj as f64 / 1000.0),
                );
                put(
                    "gpu_sm_clock_hz",
                    vec![],
                    d.clock_info(Clock::SM).ok().map(|mhz| f64::from(mhz) * 1e6),
                );
                put(
                    "gpu_sm_clock_max_hz",
                    vec![],
                    d.max_clock_info(Clock::SM)
                        .ok()
                        .map(|mhz| f64::from(mhz) * 1e6),
                );
                put(
                    "gpu_memory_clock_hz",
                    vec![],
                    d.clock_info(Clock::Memory)
                        .ok()
                        .map(|mhz| f64::from(mhz) * 1e6),
                );
                put(
                    "gpu_throttle_reasons",
                    vec![],
                    d.current_throttle_reasons().ok().map(|r| r.bits() as f64),
                );
                for (kind, t) in [
                    ("corrected", MemoryError::Corrected),
                    ("uncorrected", MemoryError::Uncorrected),
                ] {
                    put(
                        "gpu_ecc_errors_total",
                        vec![("type", kind.into())],
                        d.total_ecc_errors(t, EccCounter::Volatile)
                            .ok()
                            .map(|v| v as f64),
                    );
                }
                put(
                    "gpu_pcie_replays_total",
                    vec![],
                    d.pcie_replay_counter().ok().map(f64::from),
                );
                for link in 0..18u32 {
                    let l = d.link_wrapper_for(link);
                    if !matches!(l.is_active(), Ok(true)) {
                        continue;
                    }
                    for (name, c) in [
                        ("dl_replay", ErrorCounter::DlReplay),
                        ("dl_recovery", ErrorCounter::DlRecovery),
                        ("dl_crc_flit", ErrorCounter::DlCrcFlit),
                        ("dl_crc_data", ErrorCounter::DlCrcData),
                    ] {
                        put(
                            "gpu_nvlink_errors_total",
                            vec![("link", link.to_string()), ("counter", name.into())],
                            l.error_counter(c).ok().map(|v| v as f64),
                        );
                    }
                }
            }
            while let Ok((uuid, xid, time_unix_nano)) = self.xids.try_recv() {
                if let Some(gpu) = snap.gpus.iter().position(|g| g.uuid == uuid) {
                    snap.xids.push(XidEvent {
                        gpu,
                        xid,
                        time_unix_nano,
                    });
                }
            }
            Ok(snap)
        }
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
    }

    #[test]
    fn no_driver_is_gpu_up_zero() {
        let p = to_points(&NoGpu("no driver".into()).poll(), 1);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].metric.as_str(), p[0].value), ("gpu_up", 0.0));
    }
}
