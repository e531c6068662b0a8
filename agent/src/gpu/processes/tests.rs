use super::*;
use crate::gpu::{GpuInfo, GpuProcesses};

const POD: &str = "5f3c1a2b-7d4e-4f1a-9b8c-0e2d4a6b8c1f";

fn proc(pid: u32, mem: Option<u64>, sm: Option<f64>, mu: Option<f64>) -> GpuProcess {
    GpuProcess {
        pid,
        used_memory_bytes: mem,
        sm_utilization_percent: sm,
        memory_utilization_percent: mu,
    }
}

/// GPU 0 runs two processes of one pod, one of a Slurm job and one of the
/// host; GPU 1 is idle; GPU 2's list could not be read.
fn snapshot() -> (GpuSnapshot, HashMap<u32, Owner>) {
    let gpus = (0..3)
        .map(|i| GpuInfo {
            index: i,
            uuid: format!("GPU-{i}"),
            model: "NVIDIA H100".into(),
        })
        .collect();
    let snap = GpuSnapshot {
        gpus,
        processes: vec![
            GpuProcesses {
                gpu: 0,
                processes: vec![
                    proc(11, Some(1 << 30), Some(30.0), Some(10.0)),
                    proc(12, Some(2 << 30), Some(20.0), None),
                    proc(21, Some(512 << 20), Some(f64::NAN), None),
                    proc(31, None, None, None),
                ],
            },
            GpuProcesses {
                gpu: 1,
                processes: vec![],
            },
        ],
        ..GpuSnapshot::default()
    };
    let owners = HashMap::from([
        (11, Owner::Pod(POD.into())),
        (12, Owner::Pod(POD.into())),
        (21, Owner::SlurmJob("4242".into())),
        (31, Owner::Unowned),
    ]);
    (snap, owners)
}

type Series = BTreeMap<(String, Vec<(String, String)>), f64>;

fn series(points: &[OwnedPoint]) -> Series {
    let mut s = Series::new();
    for p in points {
        assert_eq!(p.time_unix_nano, 9);
        let old = s.insert((p.metric.clone(), p.labels.clone()), p.value);
        assert!(old.is_none(), "{} {:?} twice", p.metric, p.labels);
    }
    s
}

fn labels(gpu: u32, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut l = vec![
        ("UUID".to_owned(), format!("GPU-{gpu}")),
        ("gpu".to_owned(), gpu.to_string()),
        ("modelName".to_owned(), "NVIDIA H100".to_owned()),
    ];
    l.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    l
}

#[test]
fn processes_are_summed_per_gpu_and_owner_without_a_pid() {
    let (snap, owners) = snapshot();
    let s = series(&to_points(&snap, &owners, false, 9));
    let pod = labels(0, &[("pod_uid", POD)]);
    let job = labels(0, &[("slurm_job_id", "4242")]);
    let none = labels(0, &[]);
    let want: Series = [
        (("gpu_processes", &pod), 2.0),
        (
            ("gpu_process_memory_used_bytes", &pod),
            3.0 * f64::from(1 << 30),
        ),
        (("gpu_process_sm_utilization_percent", &pod), 50.0),
        (("gpu_process_memory_utilization_percent", &pod), 10.0),
        (("gpu_processes", &job), 1.0),
        (
            ("gpu_process_memory_used_bytes", &job),
            f64::from(512 << 20),
        ),
        (("gpu_processes", &none), 1.0),
        (("gpu_processes", &labels(1, &[])), 0.0),
    ]
    .into_iter()
    .map(|((m, l), v)| ((m.to_owned(), l.clone()), v))
    .collect();
    assert_eq!(s, want);
    assert!(s.keys().all(|(_, l)| l.iter().all(|(k, _)| k != "pid")));
}

#[test]
fn with_the_pid_setting_each_process_is_a_series() {
    let (snap, owners) = snapshot();
    let s = series(&to_points(&snap, &owners, true, 9));
    let count = |l: &[(&str, &str)], gpu| s.get(&("gpu_processes".to_owned(), labels(gpu, l)));
    assert_eq!(count(&[("pod_uid", POD), ("pid", "11")], 0), Some(&1.0));
    assert_eq!(count(&[("pod_uid", POD), ("pid", "12")], 0), Some(&1.0));
    assert_eq!(
        count(&[("slurm_job_id", "4242"), ("pid", "21")], 0),
        Some(&1.0)
    );
    assert_eq!(count(&[("pid", "31")], 0), Some(&1.0));
    // The idle marker of each GPU has no pid.
    assert_eq!(count(&[], 0), Some(&0.0));
    assert_eq!(count(&[], 1), Some(&0.0));
    assert_eq!(
        s.get(&(
            "gpu_process_memory_used_bytes".to_owned(),
            labels(0, &[("pod_uid", POD), ("pid", "12")])
        )),
        Some(&(2.0 * f64::from(1 << 30)))
    );
    let processes: f64 = s
        .iter()
        .filter(|((m, _), _)| m == "gpu_processes")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(processes, 4.0);
}

#[test]
fn an_unknown_pid_has_no_owner_and_no_list_writes_nothing() {
    let (snap, _) = snapshot();
    let s = series(&to_points(&snap, &HashMap::new(), false, 9));
    assert_eq!(s[&("gpu_processes".to_owned(), labels(0, &[]))], 4.0);
    assert!(s.keys().all(|(_, l)| l[1].1 != "2"), "GPU 2 had no list");
    assert_eq!(pids(&snap).collect::<Vec<_>>(), vec![11, 12, 21, 31]);
}
