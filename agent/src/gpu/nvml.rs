//! GPUs through NVML: [`NvmlSource`] reads every GPU at each poll, and a
//! thread of its own waits on NVML's event set for XID errors.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enum_wrappers::nv_link::ErrorCounter;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::source::{
    GpuInfo, GpuProcess, GpuProcesses, GpuReading, GpuSnapshot, GpuSource, XidEvent,
};

/// GPUs through NVML.
pub struct NvmlSource {
    nvml: Nvml,
    xids: mpsc::Receiver<(String, u64, i64)>,
    /// Per GPU UUID, the newest process utilisation sample seen (CPU µs).
    samples_seen: HashMap<String, u64>,
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
        Ok(Self {
            nvml,
            xids: rx,
            samples_seen: HashMap::new(),
        })
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
            let uuid = d.uuid().unwrap_or_else(|_| format!("index-{i}"));
            let seen = self.samples_seen.entry(uuid.clone()).or_default();
            if let Some(processes) = processes(&d, seen) {
                snap.processes.push(GpuProcesses { gpu: g, processes });
            }
            snap.gpus.push(GpuInfo {
                index: i,
                uuid,
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

/// The compute and graphics processes of a GPU, a process in both lists
/// once, with their latest utilisation samples since `seen` (which moves
/// on). `None` when neither list can be read.
fn processes(d: &Device<'_>, seen: &mut u64) -> Option<Vec<GpuProcess>> {
    // The _v3 entry points (nvml-wrapper's defaults): a driver without
    // them lists no processes.
    let compute = d.running_compute_processes();
    let graphics = d.running_graphics_processes();
    if compute.is_err() && graphics.is_err() {
        return None;
    }
    let mut by_pid: BTreeMap<u32, GpuProcess> = BTreeMap::new();
    for p in compute.into_iter().chain(graphics).flatten() {
        let used = match p.used_gpu_memory {
            UsedGpuMemory::Used(b) => Some(b),
            UsedGpuMemory::Unavailable => None,
        };
        let e = by_pid.entry(p.pid).or_insert(GpuProcess {
            pid: p.pid,
            used_memory_bytes: None,
            sm_utilization_percent: None,
            memory_utilization_percent: None,
        });
        e.used_memory_bytes = e.used_memory_bytes.max(used);
    }
    // NVML returns samples only of processes that were busy in the period
    // (NotFound: none was): a listed process without one was idle, at 0.
    let samples = match d.process_utilization_stats(*seen) {
        Ok(s) => Some(s),
        Err(NvmlError::NotFound) => Some(vec![]),
        Err(_) => None,
    };
    if let Some(mut samples) = samples {
        samples.sort_by_key(|s| s.timestamp);
        for p in by_pid.values_mut() {
            p.sm_utilization_percent = Some(0.0);
            p.memory_utilization_percent = Some(0.0);
        }
        for s in samples {
            *seen = (*seen).max(s.timestamp);
            if let Some(p) = by_pid.get_mut(&s.pid) {
                p.sm_utilization_percent = Some(f64::from(s.sm_util));
                p.memory_utilization_percent = Some(f64::from(s.mem_util));
            }
        }
    }
    Some(by_pid.into_values().collect())
}
