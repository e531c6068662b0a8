//! Which job used which GPU, with real processes: the test makes real
//! cgroups of each kind on this machine (a Kubernetes pod's containers, a
//! Slurm job under cgroup v2 and, where a v1 hierarchy is mounted, v1, a
//! Docker container), moves `sleep` children into them, and a fake
//! `GpuSource` lists those PIDs on its GPUs as NVML would. The agent reads
//! each child's real `/proc/PID/cgroup`, and the relay's Parquet holds the
//! processes summed per GPU and owner, without a `pid` label unless
//! `gpu.process_pid_label` asks for one.
//!
//! Making cgroups needs root and a writable cgroup filesystem (the test
//! command runs as root); without them the test says so and skips.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::Metrics;
use horizon_agent::Agent;
use horizon_agent::config::Config;
use horizon_agent::gpu::owner::owner_of_cgroup;
use horizon_agent::gpu::{GpuInfo, GpuProcess, GpuProcesses, GpuSnapshot, GpuSource};
use horizon_e2e::TestRelay;

const UID: &str = "0c6f9a4e-2b7d-4e15-a3c8-91d2f6b0e7a4";
const CID_A1: &str = "a1a1a1a1b2b2b2b2c3c3c3c3d4d4d4d4e5e5e5e5f6f6f6f6a7a7a7a7b8b8b8b8";
const CID_A2: &str = "a2a2a2a2b2b2b2b2c3c3c3c3d4d4d4d4e5e5e5e5f6f6f6f6a7a7a7a7b8b8b8b8";
const CID_C: &str = "c0ffee00b2b2b2b2c3c3c3c3d4d4d4d4e5e5e5e5f6f6f6f6a7a7a7a7b8b8b8b8";

/// The cgroup filesystems mounted here: (v2 mount point, a v1 hierarchy's).
fn mounts() -> (Option<PathBuf>, Option<PathBuf>) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (mut v2, mut v1) = (None, None);
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        if *root != "/" {
            continue;
        }
        match right.split(' ').next() {
            Some("cgroup2") if v2.is_none() => v2 = Some(PathBuf::from(point)),
            Some("cgroup") if v1.is_none() => v1 = Some(PathBuf::from(point)),
            _ => {}
        }
    }
    (v2, v1)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

/// Children in cgroups the test made; on drop the children are killed and
/// reaped and the cgroups removed.
#[derive(Debug, Default)]
struct Jobs {
    children: Vec<Child>,
    made: Vec<PathBuf>,
}

impl Jobs {
    /// A `sleep` child moved into `<mount>/<rel>`, which is created.
    fn spawn_in(&mut self, mount: &Path, rel: &str) -> std::io::Result<u32> {
        let dir = mount.join(rel);
        let mut at = mount.to_path_buf();
        for part in Path::new(rel).components() {
            at.push(part);
            if !at.exists() {
                std::fs::create_dir(&at)?;
                self.made.push(at.clone());
            }
        }
        let child = Command::new("sleep").arg("600").spawn()?;
        let pid = child.id();
        self.children.push(child);
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok(pid)
    }

    /// A PID that no longer exists (a child spawned and reaped).
    fn gone() -> u32 {
        let mut c = Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A reaped child may leave its cgroup a moment later.
        for dir in self.made.iter().rev() {
            for _ in 0..100 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// One listed process: its GPU, PID, the owner label the test put it
/// under (none for the host), its memory and SM samples.
#[derive(Debug, Clone)]
struct Listed {
    gpu: usize,
    pid: u32,
    owner: Option<(&'static str, String)>,
    memory: u64,
    sm: f64,
}

#[derive(Debug)]
struct FakeGpu(Vec<Listed>);

impl GpuSource for FakeGpu {
    fn poll(&mut self) -> Result<GpuSnapshot, String> {
        let gpus = (0..3)
            .map(|i| GpuInfo {
                index: i,
                uuid: format!("GPU-proc-{i}"),
                model: "NVIDIA H100 80GB HBM3".into(),
            })
            .collect();
        // GPU 2's process list cannot be read: it has no entry.
        let processes = (0..2)
            .map(|gpu| GpuProcesses {
                gpu,
                processes: self
                    .0
                    .iter()
                    .filter(|l| l.gpu == gpu)
                    .map(|l| GpuProcess {
                        pid: l.pid,
                        used_memory_bytes: Some(l.memory),
                        sm_utilization_percent: Some(l.sm),
                        memory_utilization_percent: None,
                    })
                    .collect(),
            })
            .collect();
        Ok(GpuSnapshot {
            gpus,
            processes,
            ..GpuSnapshot::default()
        })
    }
}

type Rows = BTreeMap<(String, BTreeMap<String, String>), f64>;

async fn run_agent(relay: &TestRelay, node: &str, listed: &[Listed], pid_label: bool) -> Rows {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "relay:\n  addr: {}\n  server_name: localhost\nspool:\n  dir: {}\ngpu:\n  interval_secs: 3600\n  process_pid_label: {pid_label}\nobservability:\n  metrics_addr: \"\"\n",
        relay.addr,
        dir.path().display()
    );
    let settings = Config::from_yaml(&yaml, "test")
        .unwrap()
        .validate()
        .unwrap();
    let agent = Agent::start(
        settings,
        relay.node_tls(node),
        Some(Box::new(FakeGpu(listed.to_vec()))),
    )
    .await
    .unwrap();
    let mut acked = false;
    for _ in 0..600 {
        let m = Metrics::parse(&agent.metrics.encode());
        let c = m.get("horizon_agent_points_collected_total{source=\"gpu\"}");
        if c > 0.0 && m.get("horizon_agent_points_acked_total") == c {
            acked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(acked, "the GPU poll was not acked");
    agent.stop().await.unwrap();
    let mut rows = Rows::new();
    for r in horizon_e2e::read_parquet(&["local", relay.objects.to_str().unwrap()]).rows {
        let metric = r["metric"].as_str().unwrap();
        if r["node"] != node || !metric.starts_with("gpu_process") {
            continue;
        }
        let labels = serde_json::from_value(r["labels"].clone()).unwrap();
        let old = rows.insert((metric.to_owned(), labels), r["value"].as_f64().unwrap());
        assert!(old.is_none(), "{metric} twice");
    }
    rows
}

/// What the rows must be: from the test's own table of where it put each
/// process, summed per GPU and owner (and PID with `pid_label`).
fn expected(listed: &[Listed], pid_label: bool) -> Rows {
    let mut want = Rows::new();
    for gpu in 0..2 {
        let base = |extra: Option<(&str, &str)>, pid: Option<u32>| {
            let mut l = BTreeMap::from([
                ("UUID".to_owned(), format!("GPU-proc-{gpu}")),
                ("gpu".to_owned(), gpu.to_string()),
                ("modelName".to_owned(), "NVIDIA H100 80GB HBM3".to_owned()),
            ]);
            if let Some((k, v)) = extra {
                l.insert(k.to_owned(), v.to_owned());
            }
            if let Some(pid) = pid {
                l.insert("pid".to_owned(), pid.to_string());
            }
            l
        };
        want.insert(("gpu_processes".into(), base(None, None)), 0.0);
        for p in listed.iter().filter(|p| p.gpu == gpu) {
            let owner = p.owner.as_ref().map(|(k, v)| (*k, v.as_str()));
            let l = base(owner, pid_label.then_some(p.pid));
            for (metric, v) in [
                ("gpu_processes", 1.0),
                ("gpu_process_memory_used_bytes", p.memory as f64),
                ("gpu_process_sm_utilization_percent", p.sm),
            ] {
                *want.entry((metric.into(), l.clone())).or_insert(0.0) += v;
            }
        }
    }
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_processes_in_real_cgroups_are_summed_per_pod_job_and_container() {
    let (Some(v2), v1) = mounts() else {
        eprintln!("SKIPPED: no cgroup v2 filesystem mounted here");
        return;
    };
    if !is_root() {
        eprintln!("SKIPPED: making cgroups needs root (the test command runs as root)");
        return;
    }
    // A test running inside a pod, job or container would see its own
    // owner in the hierarchies it does not move the children in.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    if owner_of_cgroup(&own).label().is_some() {
        eprintln!("SKIPPED: this test runs inside an owner's cgroup:\n{own}");
        return;
    }
    let base = format!("horizon-gpu-test-{}", std::process::id());
    let mut jobs = Jobs::default();
    let uid_ = UID.replace('-', "_");
    let pod = format!(
        "{base}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice"
    );
    let a1 = match jobs.spawn_in(&v2, &format!("{pod}/cri-containerd-{CID_A1}.scope")) {
        Ok(pid) => pid,
        Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
            eprintln!(
                "SKIPPED: the cgroup filesystem {} is read-only",
                v2.display()
            );
            return;
        }
        Err(e) => panic!("cannot make a cgroup under {}: {e}", v2.display()),
    };
    let a2 = jobs
        .spawn_in(&v2, &format!("{pod}/cri-containerd-{CID_A2}.scope"))
        .unwrap();
    let b2 = jobs
        .spawn_in(
            &v2,
            &format!("{base}/system.slice/slurmstepd.scope/job_4343/step_0/user/task_0"),
        )
        .unwrap();
    let c = jobs
        .spawn_in(&v2, &format!("{base}/system.slice/docker-{CID_C}.scope"))
        .unwrap();
    let host = jobs
        .spawn_in(&v2, &format!("{base}/system.slice/sshd.service"))
        .unwrap();
    let owner = |k: &'static str, v: &str| Some((k, v.to_owned()));
    let mut listed = vec![
        Listed {
            gpu: 0,
            pid: a1,
            owner: owner("pod_uid", UID),
            memory: 1 << 30,
            sm: 40.0,
        },
        Listed {
            gpu: 0,
            pid: a2,
            owner: owner("pod_uid", UID),
            memory: 2 << 30,
            sm: 10.0,
        },
        Listed {
            gpu: 0,
            pid: b2,
            owner: owner("slurm_job_id", "4343"),
            memory: 512 << 20,
            sm: 25.0,
        },
        Listed {
            gpu: 0,
            pid: host,
            owner: None,
            memory: 256 << 20,
            sm: 0.0,
        },
        Listed {
            gpu: 1,
            pid: c,
            owner: owner("container_id", CID_C),
            memory: 1 << 30,
            sm: 70.0,
        },
        Listed {
            gpu: 1,
            pid: Jobs::gone(),
            owner: None,
            memory: 128 << 20,
            sm: 5.0,
        },
    ];
    match &v1 {
        Some(v1) => {
            let b1 = jobs
                .spawn_in(v1, &format!("{base}/slurm/uid_1000/job_4242/step_0/task_0"))
                .unwrap();
            listed.push(Listed {
                gpu: 1,
                pid: b1,
                owner: owner("slurm_job_id", "4242"),
                memory: 3 << 30,
                sm: 15.0,
            });
        }
        None => eprintln!(
            "no cgroup v1 hierarchy mounted: the v1 Slurm path is tested on recorded files only"
        ),
    }
    // What the kernel says of the pod's first child, for the record.
    let text = std::fs::read_to_string(format!("/proc/{a1}/cgroup")).unwrap();
    assert!(
        text.contains(&format!("kubepods-burstable-pod{uid_}.slice")),
        "{text}"
    );

    let relay = TestRelay::start("").await;
    let rows = run_agent(&relay, "gpu-proc-node", &listed, false).await;
    assert_eq!(rows, expected(&listed, false));
    assert!(rows.keys().all(|(_, l)| !l.contains_key("pid")));
    // The pod's two containers are one series.
    let pod_count = rows
        .iter()
        .filter(|((m, l), _)| {
            m == "gpu_processes" && l.get("pod_uid").map(String::as_str) == Some(UID)
        })
        .map(|(_, v)| *v)
        .collect::<Vec<_>>();
    assert_eq!(pod_count, vec![2.0]);

    let rows = run_agent(&relay, "gpu-proc-node-pids", &listed, true).await;
    assert_eq!(rows, expected(&listed, true));
    relay.stop().await;
    drop(jobs);
}
