//! Who owns a process: its cgroup (`/proc/PID/cgroup`) names a Kubernetes
//! pod, a Slurm job or a container, or none of them.
//!
//! Each line of the file is `hierarchy-id:controllers:path`; cgroup v2 has
//! one line `0::/path`, v1 one line per hierarchy (a hybrid host has both).
//! Every line's path is read, and the most specific owner any of them names
//! wins: a pod before a Slurm job before a container.
//!
//! | owner | path components |
//! | --- | --- |
//! | pod, cgroupfs driver | `kubepods/[burstable/\|besteffort/]pod<uid>/…` |
//! | pod, systemd driver | `kubepods-[burstable-\|besteffort-]pod<uid with _>.slice` |
//! | Slurm job, cgroup v1 | `slurm[_<node>]/uid_<n>/job_<id>/step_<s>/…` |
//! | Slurm job, cgroup v2 | `[<node>_]slurmstepd.scope/job_<id>/step_<s>/…` |
//! | container | `<64 hex>` (Docker and containerd under cgroupfs) or `<runtime>-<64 hex>[.scope]` (`docker-`, `cri-containerd-`, `crio-`, `libpod-`, …; not a `conmon` monitor) |
//!
//! A pod's UID is 36 characters (8-4-4-4-12 hex) or, for a static pod, its
//! 32-hex config hash; the systemd driver writes its dashes as underscores,
//! and it is exported with dashes, as Kubernetes spells it. A path inside a
//! cgroup namespace (`/../../kubepods.slice/…`) is read the same way.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;

/// The owner of a process, as its cgroup names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// A Kubernetes pod, by UID (lower case, with dashes).
    Pod(String),
    /// A Slurm job, by id.
    SlurmJob(String),
    /// A container outside Kubernetes, by its 64-hex id.
    Container(String),
    /// None of these (a process of the host), or a cgroup that could not be
    /// read.
    Unowned,
}

impl Owner {
    /// The label that names the owner: `pod_uid`, `slurm_job_id` or
    /// `container_id`; none for [`Owner::Unowned`].
    pub fn label(&self) -> Option<(&'static str, &str)> {
        match self {
            Owner::Pod(uid) => Some(("pod_uid", uid)),
            Owner::SlurmJob(id) => Some(("slurm_job_id", id)),
            Owner::Container(id) => Some(("container_id", id)),
            Owner::Unowned => None,
        }
    }

    /// Lower is more specific.
    fn rank(&self) -> u8 {
        match self {
            Owner::Pod(_) => 0,
            Owner::SlurmJob(_) => 1,
            Owner::Container(_) => 2,
            Owner::Unowned => 3,
        }
    }
}

/// The owner the text of a `/proc/PID/cgroup` file names. Lines that are
/// not `id:controllers:path` are skipped.
pub fn owner_of_cgroup(text: &str) -> Owner {
    let mut best = Owner::Unowned;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let o = owner_of_path(path);
        if o.rank() < best.rank() {
            best = o;
        }
    }
    best
}

/// The owner one cgroup path names.
pub fn owner_of_path(path: &str) -> Owner {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if let Some(uid) = pod_uid(&parts) {
        return Owner::Pod(uid);
    }
    if let Some(job) = slurm_job(&parts) {
        return Owner::SlurmJob(job);
    }
    if let Some(id) = container_id(&parts) {
        return Owner::Container(id);
    }
    Owner::Unowned
}

/// Reads `<proc_dir>/<pid>/cgroup` and names its owner. The error names the
/// file (a process that has exited, or a PID of another namespace).
pub fn owner_of_pid(proc_dir: &Path, pid: u32) -> io::Result<Owner> {
    let file = proc_dir.join(pid.to_string()).join("cgroup");
    match std::fs::read_to_string(&file) {
        Ok(text) => Ok(owner_of_cgroup(&text)),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", file.display()),
        )),
    }
}

/// Owners of `pids`; a PID whose cgroup cannot be read is [`Owner::Unowned`]
/// and listed with its error.
pub fn owners_of(
    proc_dir: &Path,
    pids: impl IntoIterator<Item = u32>,
) -> (HashMap<u32, Owner>, BTreeMap<u32, io::Error>) {
    let mut owners = HashMap::new();
    let mut unreadable = BTreeMap::new();
    for pid in pids {
        if owners.contains_key(&pid) {
            continue;
        }
        let owner = owner_of_pid(proc_dir, pid).unwrap_or_else(|e| {
            unreadable.insert(pid, e);
            Owner::Unowned
        });
        owners.insert(pid, owner);
    }
    (owners, unreadable)
}

fn pod_uid(parts: &[&str]) -> Option<String> {
    let mut in_kubepods = false;
    for c in parts {
        if c.contains("kubepods") {
            // systemd driver: kubepods-burstable-pod<uid_with_underscores>.slice
            if let Some(slice) = c.strip_suffix(".slice")
                && let Some((_, uid)) = slice.rsplit_once("-pod")
                && let Some(uid) = valid_uid(&uid.replace('_', "-"))
            {
                return Some(uid);
            }
            in_kubepods = true;
            continue;
        }
        // cgroupfs driver: kubepods/burstable/pod<uid>
        if in_kubepods
            && let Some(uid) = c.strip_prefix("pod")
            && let Some(uid) = valid_uid(uid)
        {
            return Some(uid);
        }
    }
    None
}

/// A pod UID: 8-4-4-4-12 hex digits, or 32 hex digits (a static pod's
/// config hash); lower-cased.
fn valid_uid(s: &str) -> Option<String> {
    let s = s.to_ascii_lowercase();
    let dashed = s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    let hash = s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit());
    (dashed || hash).then_some(s)
}

fn slurm_job(parts: &[&str]) -> Option<String> {
    let start = parts.iter().position(|c| {
        *c == "slurm" || c.starts_with("slurm_") || c.ends_with("slurmstepd.scope")
    })?;
    parts[start + 1..].iter().find_map(|c| {
        let id = c.strip_prefix("job_")?;
        (!id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()))
            .then(|| id.to_owned())
    })
}

fn container_id(parts: &[&str]) -> Option<String> {
    parts.iter().rev().find_map(|c| {
        let c = c.strip_suffix(".scope").unwrap_or(c);
        let (runtime, id) = c.rsplit_once('-').unwrap_or(("", c));
        let hex = id.len() == 64
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (hex && !runtime.ends_with("conmon")).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests;
