//! Which job uses which GPU: the processes NVML lists on each GPU, summed
//! per owner ([`Owner`]: pod, Slurm job, container, or none), as series with
//! bounded labels.
//!
//! Per GPU (its `UUID`, `gpu`, `modelName` labels) and owner (one of
//! `pod_uid`, `slurm_job_id`, `container_id`, or none of them for
//! processes with no owner):
//!
//! | metric | value |
//! | --- | --- |
//! | `gpu_processes` | processes of that owner on that GPU |
//! | `gpu_process_memory_used_bytes` | their GPU memory, summed |
//! | `gpu_process_sm_utilization_percent` | their SM utilisation samples, summed |
//! | `gpu_process_memory_utilization_percent` | their memory-controller samples, summed |
//!
//! `gpu_processes` with no owner label is written for every GPU whose list
//! was read, 0 when it has no unowned process, so an idle GPU reads 0. The
//! others are written where at least one process of the group has the
//! value. A `pid` label (one series per process) only with
//! `gpu.process_pid_label`.

use horizon_shared::proto::MetricType;
use std::collections::{BTreeMap, HashMap};

use super::owner::Owner;
use super::source::{GpuProcess, GpuSnapshot};
use crate::record::OwnedPoint;

#[derive(Default)]
struct Sums {
    processes: u32,
    memory: Option<f64>,
    sm: Option<f64>,
    memory_util: Option<f64>,
}

fn add(sum: &mut Option<f64>, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        *sum = Some(sum.unwrap_or(0.0) + v);
    }
}

impl Sums {
    fn add(&mut self, p: &GpuProcess) {
        self.processes += 1;
        add(&mut self.memory, p.used_memory_bytes.map(|b| b as f64));
        add(&mut self.sm, p.sm_utilization_percent);
        add(&mut self.memory_util, p.memory_utilization_percent);
    }
}

/// The PIDs of every listed process.
pub fn pids(snap: &GpuSnapshot) -> impl Iterator<Item = u32> + '_ {
    snap.processes
        .iter()
        .flat_map(|g| g.processes.iter().map(|p| p.pid))
}

/// Points for the process lists of `snap`, owners looked up in `owners`
/// (a PID not in it has none), at `time_unix_nano`.
pub fn to_points(
    snap: &GpuSnapshot,
    owners: &HashMap<u32, Owner>,
    pid_label: bool,
    time_unix_nano: i64,
) -> Vec<OwnedPoint> {
    let mut out = Vec::new();
    for list in &snap.processes {
        let Some(g) = snap.gpus.get(list.gpu) else {
            continue;
        };
        let mut groups: BTreeMap<(&Owner, Option<u32>), Sums> = BTreeMap::new();
        groups.entry((&Owner::Unowned, None)).or_default();
        for p in &list.processes {
            let owner = owners.get(&p.pid).unwrap_or(&Owner::Unowned);
            let key = (owner, pid_label.then_some(p.pid));
            groups.entry(key).or_default().add(p);
        }
        for ((owner, pid), sums) in &groups {
            let mut labels = vec![
                ("UUID".to_owned(), g.uuid.clone()),
                ("gpu".to_owned(), g.index.to_string()),
                ("modelName".to_owned(), g.model.clone()),
            ];
            if let Some((k, v)) = owner.label() {
                labels.push((k.to_owned(), v.to_owned()));
            }
            if let Some(pid) = pid {
                labels.push(("pid".to_owned(), pid.to_string()));
            }
            let values = [
                ("gpu_processes", Some(f64::from(sums.processes))),
                ("gpu_process_memory_used_bytes", sums.memory),
                ("gpu_process_sm_utilization_percent", sums.sm),
                ("gpu_process_memory_utilization_percent", sums.memory_util),
            ];
            for (metric, value) in values {
                let Some(value) = value else { continue };
                out.push(OwnedPoint {
                    metric: metric.to_owned(),
                    labels: labels.clone(),
                    time_unix_nano,
                    value,
                    metric_type: MetricType::Gauge,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
