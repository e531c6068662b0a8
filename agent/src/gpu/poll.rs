//! The GPU source's task: polls it every `gpu.interval_secs` and spools
//! `gpu_up`, the readings, and the processes per owner.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use horizon_shared::clock::unix_nanos_now;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::owner::owners_of;
use super::source::{GpuSnapshot, GpuSource};
use super::{processes, to_points};
use crate::config::GpuSettings;
use crate::metrics::Metrics;
use crate::record::OwnedPoint;
use crate::sink::SpoolSink;

/// Where process cgroups are read: the agent must share the host's PID
/// namespace, as NVML's PIDs are the host's.
const PROC_DIR: &str = "/proc";

/// Polls a GPU source every `settings.interval`, spooling `gpu_up`, the
/// readings and the process series.
pub async fn run_gpu(
    mut source: Box<dyn GpuSource>,
    settings: GpuSettings,
    sink: Arc<SpoolSink>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said = None::<String>;
    let mut owners = OwnerLog::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snap = tokio::task::block_in_place(|| source.poll());
        match &snap {
            Ok(s) if !s.gpus.is_empty() => {
                metrics.gpu_up.set(1);
                said = None;
            }
            Ok(_) | Err(_) => {
                metrics.gpu_up.set(0);
                let why = snap
                    .as_ref()
                    .err()
                    .cloned()
                    .unwrap_or_else(|| "NVML sees no GPU".into());
                if said.as_deref() != Some(&why) {
                    warn!(reason = %why, "no GPU metrics (exporting gpu_up 0); other sources keep running");
                    said = Some(why);
                }
            }
        }
        let now = unix_nanos_now();
        let mut points = to_points(&snap, now);
        if let Ok(s) = &snap {
            points.extend(process_points(
                s,
                Path::new(PROC_DIR),
                settings.process_pid_label,
                &mut owners,
                now,
            ));
        }
        sink.push("gpu", &points);
    }
}

/// The process series of a snapshot, owners read under `proc_dir`.
fn process_points(
    snap: &GpuSnapshot,
    proc_dir: &Path,
    pid_label: bool,
    log: &mut OwnerLog,
    time_unix_nano: i64,
) -> Vec<OwnedPoint> {
    if snap.processes.is_empty() {
        return Vec::new();
    }
    let (owners, unreadable) = owners_of(proc_dir, processes::pids(snap));
    log.note(unreadable);
    processes::to_points(snap, &owners, pid_label, time_unix_nano)
}

/// Says once when GPU processes' cgroups cannot be read. A process that
/// exits between NVML's list and the read is normal; a PID unreadable at
/// two polls in a row is not (an agent outside the host's PID namespace).
#[derive(Debug, Default)]
struct OwnerLog {
    last: BTreeMap<u32, io::Error>,
    warned: bool,
}

impl OwnerLog {
    fn note(&mut self, unreadable: BTreeMap<u32, io::Error>) {
        let persistent: Vec<_> = unreadable
            .iter()
            .filter(|(pid, _)| self.last.contains_key(pid))
            .collect();
        if let Some((pid, e)) = persistent.first() {
            if !self.warned {
                warn!(
                    processes = persistent.len(),
                    pid = **pid,
                    error = %e,
                    "cannot read the cgroup of GPU processes; they are exported without an owner (does the agent share the host's PID namespace?)"
                );
                self.warned = true;
            }
        } else if self.warned && unreadable.is_empty() {
            info!("the cgroups of GPU processes are readable again");
            self.warned = false;
        }
        self.last = unreadable;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::owner::Owner;
    use crate::gpu::{GpuInfo, GpuProcess, GpuProcesses};

    #[test]
    fn owners_are_read_from_the_proc_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("7")).unwrap();
        std::fs::write(
            dir.path().join("7/cgroup"),
            "0::/system.slice/slurmstepd.scope/job_31/step_0/user/task_0\n",
        )
        .unwrap();
        let snap = GpuSnapshot {
            gpus: vec![GpuInfo {
                index: 0,
                uuid: "GPU-a".into(),
                model: "m".into(),
            }],
            processes: vec![GpuProcesses {
                gpu: 0,
                processes: [7, 8]
                    .map(|pid| GpuProcess {
                        pid,
                        used_memory_bytes: Some(100),
                        sm_utilization_percent: None,
                        memory_utilization_percent: None,
                    })
                    .to_vec(),
            }],
            ..GpuSnapshot::default()
        };
        let mut log = OwnerLog::default();
        let p = process_points(&snap, dir.path(), false, &mut log, 1);
        let job = Owner::SlurmJob("31".into());
        let (k, v) = job.label().unwrap();
        let of = |metric: &str, with_job: bool| {
            p.iter()
                .find(|p| {
                    p.metric == metric && p.labels.iter().any(|(a, b)| a == k && b == v) == with_job
                })
                .map(|p| p.value)
        };
        assert_eq!(of("gpu_processes", true), Some(1.0));
        assert_eq!(of("gpu_process_memory_used_bytes", true), Some(100.0));
        // PID 8 has no cgroup file: counted, without an owner.
        assert_eq!(of("gpu_processes", false), Some(1.0));
        assert!(!log.warned, "one miss is a process that exited");
        process_points(&snap, dir.path(), false, &mut log, 2);
        assert!(log.warned, "the same PID missing twice is said");
        std::fs::create_dir(dir.path().join("8")).unwrap();
        std::fs::write(dir.path().join("8/cgroup"), "0::/\n").unwrap();
        process_points(&snap, dir.path(), false, &mut log, 3);
        assert!(!log.warned);
        // No process list read: no process series.
        let none = GpuSnapshot {
            processes: vec![],
            ..snap
        };
        assert!(process_points(&none, dir.path(), false, &mut log, 4).is_empty());
    }
}
