//! Helpers shared by the relay's integration tests: reading what the binary
//! stored, and a QUIC client and server in memory (`quic_pair`).

#![allow(clippy::unwrap_used, dead_code)]

pub mod quic_pair;

use std::path::Path;
use std::process::Command;

/// Reads the raw Parquet objects under `dir` with pyarrow
/// (`tests/py/read_parquet.py`) and returns its JSON (`files`, `rows`).
pub fn read_parquet_local(dir: &Path) -> serde_json::Value {
    let reader = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/py/read_parquet.py");
    let out = Command::new("python3")
        .arg(reader)
        .args(["local", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow reader failed (install: bash infra/dev/install-test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
