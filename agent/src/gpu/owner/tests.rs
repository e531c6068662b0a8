//! Recorded `/proc/PID/cgroup` files of each kind, and real processes.

use super::*;

const UID: &str = "5f3c1a2b-7d4e-4f1a-9b8c-0e2d4a6b8c1f";
const UID_: &str = "5f3c1a2b_7d4e_4f1a_9b8c_0e2d4a6b8c1f";
const CID: &str = "3b1e0f2a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

fn pod() -> Owner {
    Owner::Pod(UID.into())
}

#[test]
fn kubernetes_pods_under_both_drivers_and_both_cgroup_versions() {
    let cases = [
        // cgroup v2, systemd driver, containerd (burstable).
        format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
        ),
        // cgroup v2, systemd driver, CRI-O (guaranteed: no QoS slice).
        format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/crio-{CID}.scope\n"),
        // cgroup v1, cgroupfs driver, Docker: every hierarchy, and an empty v2 line.
        format!(
            "12:hugetlb:/kubepods/burstable/pod{UID}/{CID}\n11:devices:/kubepods/burstable/pod{UID}/{CID}\n10:memory:/kubepods/burstable/pod{UID}/{CID}\n4:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n0::/\n"
        ),
        // cgroup v1, cgroupfs driver, guaranteed.
        format!("3:cpuset:/kubepods/pod{UID}/{CID}\n"),
        // cgroup v1, systemd driver, best effort, Docker scopes.
        format!(
            "9:cpu,cpuacct:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{CID}.scope\n"
        ),
        // Read from inside a cgroup namespace: the path is relative.
        format!("0::/../../kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope\n"),
        // kind's nested kubelet.
        format!(
            "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
        ),
        // A pod's pause/sandbox cgroup, upper-case UID.
        format!("0::/kubepods/besteffort/pod{}\n", UID.to_ascii_uppercase()),
    ];
    for text in &cases {
        assert_eq!(owner_of_cgroup(text), pod(), "{text}");
    }
    // A static pod's UID is its 32-hex config hash.
    assert_eq!(
        owner_of_cgroup(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6d1b5d1a2f1c4f4d9e0d8c6b1a2f3e4d.slice/cri-containerd-aa.scope\n"
        ),
        Owner::Pod("6d1b5d1a2f1c4f4d9e0d8c6b1a2f3e4d".into())
    );
}

#[test]
fn slurm_jobs_under_cgroup_v1_and_v2() {
    let cases = [
        // cgroup v1 (task/cgroup on a hybrid host): the job in every
        // controller it constrains, slurmd's unit in the others.
        (
            "11:freezer:/slurm/uid_1000/job_4242/step_0/task_0\n10:memory:/slurm/uid_1000/job_4242/step_0/task_0\n7:devices:/slurm/uid_1000/job_4242/step_0/task_0\n4:cpuset:/slurm/uid_1000/job_4242/step_0\n1:name=systemd:/system.slice/slurmd.service\n0::/system.slice/slurmd.service\n",
            "4242",
        ),
        // cgroup v1 with several slurmd on one host.
        ("4:cpuset:/slurm_node7/uid_0/job_12/step_extern\n", "12"),
        // cgroup v2 (cgroup/v2 plugin): under slurmstepd's scope.
        (
            "0::/system.slice/slurmstepd.scope/job_4242/step_batch/user/task_0\n",
            "4242",
        ),
        (
            "0::/system.slice/node7_slurmstepd.scope/job_99/step_0/user/task_1\n",
            "99",
        ),
    ];
    for (text, job) in cases {
        assert_eq!(owner_of_cgroup(text), Owner::SlurmJob(job.into()), "{text}");
    }
    // slurmstepd's own cgroup belongs to no job.
    assert_eq!(
        owner_of_cgroup("0::/system.slice/slurmstepd.scope/system\n"),
        Owner::Unowned
    );
}

#[test]
fn containers_outside_kubernetes() {
    let cases = [
        format!("0::/system.slice/docker-{CID}.scope\n"),
        format!("12:memory:/docker/{CID}\n1:name=systemd:/docker/{CID}\n0::/\n"),
        format!("0::/machine.slice/libpod-{CID}.scope/container\n"),
        format!("0::/system.slice/cri-containerd-{CID}.scope\n"),
        format!("0::/default/{CID}\n"),
    ];
    for text in &cases {
        assert_eq!(
            owner_of_cgroup(text),
            Owner::Container(CID.into()),
            "{text}"
        );
    }
    // Podman's and CRI-O's monitor process is not the container.
    assert_eq!(
        owner_of_cgroup(&format!("0::/machine.slice/libpod-conmon-{CID}.scope\n")),
        Owner::Unowned
    );
}

#[test]
fn host_processes_and_lookalikes_have_no_owner() {
    let cases = [
        "0::/\n".to_owned(),
        "0::/init.scope\n".into(),
        "0::/user.slice/user-1000.slice/session-3.scope\n".into(),
        "0::/system.slice/nvidia-persistenced.service\n".into(),
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/d18d4561af4a73d3c1b16df77dddd824\n0::/\n".into(),
        String::new(),
        "not a cgroup file\n\n".into(),
        // pod<uid> outside kubepods, a malformed UID, a job outside Slurm,
        // an empty job id, an upper-case or short container id.
        format!("0::/system.slice/pod{UID}\n"),
        "0::/kubepods/burstable/podnot-a-uid/x\n".into(),
        format!("0::/kubepods.slice/kubepods-pod{}.slice\n", &UID_[..30]),
        "0::/batch/job_42/step_0\n".into(),
        "0::/slurm/uid_1/job_/step_0\n".into(),
        format!("0::/docker/{}\n", CID.to_ascii_uppercase()),
        format!("0::/docker/{}\n", &CID[..63]),
    ];
    for text in &cases {
        assert_eq!(owner_of_cgroup(text), Owner::Unowned, "{text:?}");
    }
}

#[test]
fn the_most_specific_owner_of_any_line_wins() {
    // A Slurm job whose task runs in a container: the job.
    let text = format!("4:cpuset:/slurm/uid_1/job_7/step_0\n0::/system.slice/docker-{CID}.scope\n");
    assert_eq!(owner_of_cgroup(&text), Owner::SlurmJob("7".into()));
    // A pod, whatever the other hierarchies say.
    let text = format!("4:cpuset:/slurm/uid_1/job_7/step_0\n0::/kubepods/pod{UID}/{CID}\n");
    assert_eq!(owner_of_cgroup(&text), pod());
}

#[test]
fn labels_name_the_owner_kind() {
    assert_eq!(pod().label(), Some(("pod_uid", UID)));
    assert_eq!(
        Owner::SlurmJob("9".into()).label(),
        Some(("slurm_job_id", "9"))
    );
    assert_eq!(
        Owner::Container(CID.into()).label(),
        Some(("container_id", CID))
    );
    assert_eq!(Owner::Unowned.label(), None);
}

#[test]
fn a_proc_directory_of_recorded_files_is_read_and_a_missing_pid_named() {
    let dir = tempfile::tempdir().unwrap();
    for (pid, text) in [
        (
            100,
            format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope\n"),
        ),
        (
            200,
            "0::/system.slice/slurmstepd.scope/job_5/step_0/user/task_0\n".into(),
        ),
        (300, "0::/init.scope\n".into()),
    ] {
        std::fs::create_dir(dir.path().join(pid.to_string())).unwrap();
        std::fs::write(dir.path().join(format!("{pid}/cgroup")), text).unwrap();
    }
    let (owners, unreadable) = owners_of(dir.path(), [100, 200, 300, 400, 100]);
    assert_eq!(owners.len(), 4);
    assert_eq!(owners[&100], pod());
    assert_eq!(owners[&200], Owner::SlurmJob("5".into()));
    assert_eq!(owners[&300], Owner::Unowned);
    assert_eq!(owners[&400], Owner::Unowned);
    assert_eq!(unreadable.keys().copied().collect::<Vec<_>>(), vec![400]);
    let e = unreadable[&400].to_string();
    assert!(e.contains("400/cgroup"), "{e}");
    assert_eq!(unreadable[&400].kind(), io::ErrorKind::NotFound);
}

#[test]
fn a_real_child_process_is_read_from_proc() {
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let owner = owner_of_pid(Path::new("/proc"), pid);
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel's file has at least the v2 line or one v1 line, and the
    // child is where its parent is: whatever our cgroup names.
    assert!(
        text.lines().any(|l| l.splitn(3, ':').count() == 3),
        "{text}"
    );
    assert_eq!(owner.unwrap(), owner_of_cgroup(&text));
    let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert_eq!(owner_of_cgroup(&mine), owner_of_cgroup(&text));
    // Once reaped, its PID has no cgroup file, and the error says which.
    let e = owner_of_pid(Path::new("/proc"), pid).unwrap_err();
    assert!(
        e.to_string().contains(&format!("/proc/{pid}/cgroup")),
        "{e}"
    );
}
