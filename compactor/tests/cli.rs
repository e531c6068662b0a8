//! The `telemetry-compactor` binary: its CLI on raw objects written by the
//! relay's encoder, DuckDB reading the result (the README's one-liner), and
//! the Lambda entry point served by `cargo lambda watch` and invoked with a
//! real scheduled-event payload by `cargo lambda invoke`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use horizon_shared::layout::{Hour, raw_object_key};
use horizon_shared::proto::{Label, MetricType};
use horizon_shared::raw::{RawPoint, encode_raw_objects};

const BIN: &str = env!("CARGO_BIN_EXE_telemetry-compactor");

fn compactor(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .expect("the compactor runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Two closed hours of raw objects in `<dir>/raw`, each point written by
/// two relays (a failover resend). Returns the distinct points.
fn write_raw(dir: &Path) -> usize {
    let start = Hour::parse("2025-06-01T10").expect("hour");
    let mut points = Vec::new();
    for hour in [start, start.next()] {
        for n in 0..3 {
            for s in 0..4 {
                for t in (0..3600).step_by(30) {
                    let time = (hour.start_unix_secs + t) * 1_000_000_000;
                    points.push(RawPoint {
                        node: format!("node-{n}"),
                        metric: "gpu_temp_celsius".into(),
                        labels: vec![Label {
                            key: "gpu".into(),
                            value: s.to_string(),
                        }],
                        time,
                        value: f64::from(n * 10 + s),
                        received_at: time + 1_000_000,
                        metric_type: MetricType::Gauge,
                    });
                }
            }
        }
    }
    for (i, relay) in ["relay-a", "relay-b"].iter().enumerate() {
        for (hour, _, bytes) in encode_raw_objects(&points, relay).expect("encode") {
            let key = raw_object_key("raw", hour, relay, 1_700_000_000_000, i as u64);
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("write raw object");
        }
    }
    points.len()
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn help_names_every_flag_and_its_variable() {
    let out = compactor(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "--dry-run",
        "--hour",
        "--from",
        "--store-url",
        "HORIZON_STORE_URL",
        "HORIZON_ALLOWED_LATENESS_SECS",
        "lambda",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn bad_flags_are_clear_errors() {
    let out = compactor(&["--hour", "2026-13-01T00"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--hour"),
        "{}",
        text(&out.stderr)
    );
    let out = compactor(&["--store-url", "gs://bucket"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--store-url"),
        "{}",
        text(&out.stderr)
    );
    let out = compactor(&["--target-file-size", "big"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("target-file-size"),
        "{}",
        text(&out.stderr)
    );
    // A flag before a subcommand would be the compaction's, not the
    // subcommand's: refused, so a backfill never runs on the default store.
    let out = compactor(&[
        "--store-url",
        "/nonexistent",
        "rollup",
        "--from",
        "2026-09-01T00",
        "--to",
        "2026-09-01T01",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("'rollup'") && err.contains("--store-url"),
        "{err}"
    );
}

#[test]
fn compacts_from_the_command_line_and_duckdb_reads_the_result() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let objects = tmp.path().join("objects");
    let distinct = write_raw(&objects);
    let url = objects.display().to_string();

    // Dry run: a plan, and nothing written.
    let out = compactor(&["--store-url", &url, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert_eq!(
        plan.matches("would fold 2 raw objects").count(),
        2,
        "{plan}"
    );
    assert!(
        !objects.join("compacted").exists(),
        "a dry run wrote something"
    );

    let out = compactor(&["--store-url", &url, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let units = report["units"].as_array().expect("units");
    assert_eq!(units.len(), 2, "{report}");
    let rows: u64 = units
        .iter()
        .map(|u| u["rows_out"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(rows as usize, distinct, "{report}");
    assert!(
        units.iter().all(|u| u["outcome"] == "compacted"),
        "{report}"
    );
    assert_eq!(count_files(&objects.join("raw")), 0, "raw objects remain");

    // The README's DuckDB one-liner, on the compacted dataset.
    let glob = format!("{url}/compacted/dt=*/hour=*/*.parquet");
    let sql = format!(
        "select count(*), count(distinct (node, series_id, time)), min(hour), max(hour) from read_parquet('{glob}', hive_partitioning=true)"
    );
    let out = Command::new("python3")
        .args([
            "-c",
            &format!("import duckdb; print(duckdb.sql(\"{sql}\").fetchall())"),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "duckdb failed (bash infra/dev/install-test-deps.sh installs it): {}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!("[({distinct}, {distinct}, 10, 11)]")
    );

    // Again: nothing to do.
    let out = compactor(&["--store-url", &url]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("nothing to compact"),
        "{}",
        text(&out.stderr)
    );
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn cargo_lambda(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.arg("lambda")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn lambda_handles_a_scheduled_event_under_cargo_lambda() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let objects = tmp.path().join("objects");
    let distinct = write_raw(&objects);
    let port = free_port();
    let p = port.to_string();
    let log = std::fs::File::create(tmp.path().join("watch.log")).expect("log");
    let watch = cargo_lambda(&[
        "watch",
        "--only-lambda-apis",
        "--invoke-address",
        "127.0.0.1",
        "--invoke-port",
        &p,
        "--timeout",
        "60",
    ])
    .stdout(Stdio::null())
    .stderr(log)
    .spawn()
    .expect("cargo lambda runs (bash infra/dev/install-test-deps.sh installs cargo-lambda)");
    let _watch = Killed(watch);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch did not listen: {}",
            std::fs::read_to_string(tmp.path().join("watch.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The function process, as the Lambda service starts it: no arguments.
    let function = Command::new(BIN)
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("HORIZON_STORE_URL", &objects)
        .env("HORIZON_WORK_DIR", tmp.path())
        // The emulator's invocations last 60 s: keep starting units until 5 s before.
        .env("HORIZON_LAMBDA_STOP_MARGIN_SECS", "5")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the function starts");
    let _function = Killed(function);

    let invoke = |data_file: &PathBuf| {
        let out = cargo_lambda(&[
            "invoke",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &p,
            "--data-file",
        ])
        .arg(data_file)
        .arg("_")
        .output()
        .expect("cargo lambda invoke runs");
        assert!(
            out.status.success(),
            "invoke failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON response")
    };
    let scheduled = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/events/scheduled.json"
    ));
    let r = invoke(&scheduled);
    assert_eq!(r["failures"], 0, "{r}");
    assert_eq!(r["rows_committed"].as_u64(), Some(distinct as u64), "{r}");
    assert_eq!(r["units"].as_array().map(Vec::len), Some(2), "{r}");

    // A targeted dry run of one hour, through the same function.
    let target = tmp.path().join("target.json");
    std::fs::write(&target, r#"{"hour": "2025-06-01T10", "dry_run": true}"#).expect("write event");
    let r = invoke(&target);
    assert_eq!(r["units"][0]["outcome"], "planned", "{r}");
    assert_eq!(r["units"][0]["new_raw_objects"], 0, "{r}");
    assert_eq!(r["units"][0]["generation"], 1, "{r}");
}
