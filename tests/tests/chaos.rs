//! The chaos run, shortened: `infra/fleet/chaos.sh` with 5 s cuts on the
//! local fleet (three relays behind nginx's UDP balancer, moto, InfluxDB,
//! the load generator): a relay killed and restarted, S3 cut off while the
//! sink queues fill, InfluxDB stopped, a relay stopped mid-stream. Every
//! point acked durably must be in the compacted dataset, each once. The
//! full run's figures are in docs/benchmarks.md.
//!
//! The fleet listens on fixed loopback ports (5001, 5101-5103, 5555, 8086,
//! 8088, 9101-9103), like `run-local-fleet.sh`; its files go to a
//! temporary directory.

#![allow(clippy::unwrap_used)]

use std::process::Command;

/// A number after `label` in the account.
fn figure(out: &str, label: &str) -> f64 {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in the account:\n{out}"))
}

#[test]
fn chaos_short_run_loses_nothing_acked() {
    let relay = horizon_e2e::bins::workspace_binary("telemetry-relay");
    let bin_dir = relay.parent().unwrap();
    let dev = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let out = Command::new("bash")
        .arg(root.join("infra/fleet/chaos.sh"))
        .env("BIN_DIR", bin_dir)
        .env("DEV_DIR", dev.path())
        .env("CUT_SECS", "5")
        .env("GAP_SECS", "3")
        .env("NODES", "10")
        .env("RATE", "3000")
        .env("BACKPRESSURE", "20")
        // At 1,000 points/s a relay, a 5 s cut fills its queue after two
        // flushes in flight and a batcher of 1,000 rows.
        .env("FLUSH_ROWS", "1000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chaos.sh failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("every acked point stored once: yes"),
        "{stdout}"
    );
    let acked = figure(&stdout, "points acked (durable)");
    let rows = figure(&stdout, "rows in the compacted dataset");
    assert!(acked > 0.0 && rows >= acked, "{stdout}");
    assert!(
        figure(&stdout, "batches that waited for a full queue") > 0.0,
        "the S3 cut filled a sink queue:\n{stdout}"
    );
    for fault in [
        "SIGKILL relay 1",
        "S3 cut off",
        "InfluxDB stopped",
        "SIGTERM relay 2",
    ] {
        assert!(stdout.contains(fault), "{fault} did not happen:\n{stdout}");
    }
}
