//! Binaries of the workspace for tests in other packages, which get no
//! `CARGO_BIN_EXE_` for them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary `name` of a workspace package, built (if it needs to be) by
/// the cargo that built the calling test, into the same target directory,
/// with the profile and the workspace-wide feature set of a test build:
/// after `cargo nextest run --workspace` (which builds every package's
/// binaries for their own integration tests) this builds nothing, where
/// building one package alone or with the dev profile would compile many
/// dependencies a second time.
pub fn workspace_binary(name: &str) -> PathBuf {
    // The calling test runs as <target>/debug/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in <target>/debug/deps");
    let target = profile_dir.parent().expect("target directory");
    assert_eq!(
        profile_dir.file_name().and_then(|n| n.to_str()),
        Some("debug"),
        "workspace binaries are found from a test build"
    );
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // The variables cargo sets for the test are not the build's: a build
    // script that watches one of them (ring's watches CARGO_MANIFEST_DIR)
    // would rebuild half the tree, and the next plain build again.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_")
            || k.starts_with("NEXTEST")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_TARGET_TMPDIR",
                "CARGO_PRIMARY_PACKAGE",
                "OUT_DIR",
            ]
            .contains(&k.as_ref())
        {
            cargo.env_remove(k.as_ref());
        }
    }
    let status = cargo
        .args(["build", "--quiet", "--workspace", "--tests", "--bins"])
        .args(["--profile", "test", "--target-dir"])
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "cargo build of the workspace's binaries failed"
    );
    let bin = profile_dir.join(name);
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}
