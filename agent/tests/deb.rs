//! The agent's Debian package, as an operator gets it: built with cargo-deb
//! from `[package.metadata.deb]`, installed on this machine with `dpkg -i`,
//! its unit checked by `systemd-analyze verify`, the installed example
//! configuration checked by the unit's own `ExecStartPre=` command and read
//! as the agent's group, then removed (the conffile kept) and purged.
//!
//! The package holds the binary this test run built (the test profile's, so
//! no second, release build): cargo-deb packages `target/release/…`, and the
//! test puts that binary there in a target directory of its own. A release
//! package is `cargo deb -p horizon-agent`, with the same metadata.
//!
//! It installs into the machine itself, which needs root (the test command
//! runs as root); runs of this test are serialised by a lock file, and a
//! machine where `horizon-agent` is already installed is left alone.

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const PKG: &str = "horizon-agent";
const CONFIG: &str = "/etc/horizon/agent.yaml";
const UNIT: &str = "/lib/systemd/system/telemetry-agent.service";
const BIN: &str = "/usr/bin/telemetry-agent";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, which must succeed; its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn found(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

/// dpkg's status of the package ("" when dpkg knows nothing of it).
fn status() -> String {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", PKG]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dpkg ARGS`, waiting while another dpkg or apt holds dpkg's lock.
fn dpkg(args: &[&str]) -> String {
    for _ in 0..120 {
        let out = run(Command::new("dpkg").args(args));
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if !String::from_utf8_lossy(&out.stderr).contains("lock") {
            panic!("dpkg {args:?} failed: {}", text(&out));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("dpkg's lock stayed held for 2 minutes");
}

/// Purges the package when the test ends, passed or not.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let out = run(Command::new("dpkg").args(["--purge", PKG]));
        if !out.status.success() {
            eprintln!("cleanup: dpkg --purge {PKG} failed: {}", text(&out));
        }
    }
}

fn group_id(name: &str) -> u32 {
    let line = ok(Command::new("getent").args(["group", name]));
    line.split(':').nth(2).unwrap().trim().parse().unwrap()
}

#[test]
fn the_deb_installs_its_unit_verifies_and_its_configuration_checks() {
    if !is_root() {
        eprintln!("SKIPPED: dpkg -i needs root (the test command runs as root)");
        return;
    }
    assert!(
        found("dpkg"),
        "dpkg is missing: the package test needs Debian's dpkg"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let has_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_deb,
        "cargo-deb is missing: cargo install --locked cargo-deb (infra/dev/install-test-deps.sh)"
    );
    let lock = File::create("/tmp/horizon-agent-deb-test.lock").unwrap();
    lock.lock().unwrap();
    let before = status();
    if !before.is_empty() && before != "unknown ok not-installed" {
        eprintln!(
            "SKIPPED: {PKG} is already on this machine ({before}); dpkg --purge {PKG} to run this test"
        );
        return;
    }

    // Build: the binary of this test run, packaged by cargo-deb.
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    let built = Path::new(env!("CARGO_BIN_EXE_telemetry-agent"));
    std::fs::copy(built, release.join("telemetry-agent")).unwrap();
    let out_dir = dir.path().join("deb");
    ok(Command::new(&cargo)
        .args(["deb", "-p", PKG, "--no-build", "--strip", "--fast", "-o"])
        .arg(&out_dir)
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .current_dir(repo()));
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote no .deb");
    let deb = deb.to_str().unwrap();
    let listing = ok(Command::new("dpkg-deb").args(["-c", deb]));
    for file in [BIN, UNIT, CONFIG] {
        assert!(
            listing.contains(&format!(".{file}\n")),
            "{file} not in:\n{listing}"
        );
    }
    let control = dir.path().join("control");
    ok(Command::new("dpkg-deb").args(["-e", deb]).arg(&control));
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).unwrap(),
        format!("{CONFIG}\n")
    );

    // Install.
    let _purge = Purge;
    dpkg(&["-i", deb]);
    assert_eq!(status(), "install ok installed");
    // The installed binary is the one built, stripped of its debug info.
    let version = |bin: &Path| ok(Command::new(bin).arg("--version"));
    assert_eq!(version(Path::new(BIN)), version(built));
    assert!(std::fs::metadata(BIN).unwrap().len() < std::fs::metadata(built).unwrap().len());
    let example = std::fs::read_to_string(repo().join("infra/agent.example.yaml")).unwrap();
    assert_eq!(std::fs::read_to_string(CONFIG).unwrap(), example);
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert_eq!(
        unit,
        std::fs::read_to_string(repo().join("infra/systemd/telemetry-agent.service")).unwrap()
    );
    // postinst: the unit's supplementary group exists and owns the config.
    let gid = group_id("horizon");
    let meta = std::fs::metadata(CONFIG).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, gid, 0o640)
    );

    // The unit: systemd's own check, no warning at all.
    if found("systemd-analyze") {
        let out = run(Command::new("systemd-analyze").args(["verify", UNIT]));
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "systemd-analyze verify {UNIT}: {}",
            text(&out)
        );
    } else {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed here");
    }

    // The installed configuration, checked by the unit's ExecStartPre= line.
    let pre = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStartPre="))
        .expect("the unit has an ExecStartPre= line");
    let words: Vec<&str> = pre.split_whitespace().collect();
    assert_eq!(words, [BIN, "--check-config", CONFIG]);
    let said = ok(Command::new(words[0]).args(&words[1..]));
    assert!(said.starts_with("configuration is valid"), "{said}");
    // As the unit runs it: an unprivileged user with the group `horizon`
    // reads it; without the group it is refused, naming the file.
    let as_nobody = |groups: &str| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534"]);
        match groups {
            "" => c.arg("--clear-groups"),
            g => c.arg(format!("--groups={g}")),
        };
        c.args(&words);
        run(&mut c)
    };
    if found("setpriv") {
        let out = as_nobody(&gid.to_string());
        assert!(out.status.success(), "with the group: {}", text(&out));
        let out = as_nobody("");
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains(CONFIG),
            "without the group: {}",
            text(&out)
        );
    } else {
        eprintln!("SKIPPED the group check: setpriv (util-linux) is not installed here");
    }

    // Installed again (an upgrade's path through the scripts): unchanged.
    dpkg(&["-i", deb]);
    let overrides = ok(Command::new("dpkg-statoverride").args(["--list", CONFIG]));
    assert_eq!(overrides, format!("root horizon 640 {CONFIG}\n"));

    // Remove keeps the edited conffile; purge takes it and the override.
    std::fs::write(CONFIG, format!("{example}# edited\n")).unwrap();
    dpkg(&["-r", PKG]);
    assert_eq!(status(), "deinstall ok config-files");
    assert!(!Path::new(BIN).exists());
    assert!(
        std::fs::read_to_string(CONFIG)
            .unwrap()
            .ends_with("# edited\n")
    );
    dpkg(&["--purge", PKG]);
    assert!(!Path::new(CONFIG).exists());
    assert!(
        !run(Command::new("dpkg-statoverride").args(["--list", CONFIG]))
            .status
            .success()
    );
    let after = status();
    assert!(
        after.is_empty() || after == "unknown ok not-installed",
        "{after}"
    );
}
