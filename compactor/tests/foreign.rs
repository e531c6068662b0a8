//! Raw objects written by another Parquet writer are compacted, not moved
//! aside: pyarrow rewrites a relay's object as a one-row slice (its
//! dictionaries keep every entry of the object it was sliced from), with
//! plain-encoded strings, and in several row groups. The rows come out
//! exactly once, and nothing is quarantined. And a work directory that does
//! not exist yet is created.

#![allow(clippy::unwrap_used)]

use std::path::Path as FsPath;
use std::process::Command;
use std::sync::Arc;

use horizon_compactor::{Compactor, Outcome, Settings, Unit, UnitResult};
use horizon_shared::layout::{Hour, raw_object_key};
use horizon_shared::proto::Label;
use horizon_shared::raw::{RawPoint, encode_raw_objects};
use object_store::local::LocalFileSystem;

const HOUR: &str = "2025-06-01T10";

/// One relay object: 75 metrics of one node (a `metric` dictionary of 75
/// entries), 4 points each.
fn relay_object() -> Vec<u8> {
    let hour = Hour::parse(HOUR).unwrap();
    let mut points = Vec::new();
    for s in 0..75 {
        for t in 0..4i64 {
            let time = (hour.start_unix_secs + t * 10) * 1_000_000_000;
            points.push(RawPoint {
                node: "gpu-node-001".into(),
                metric: format!("DCGM_FI_DEV_FIELD_{s:02}"),
                labels: vec![Label {
                    key: "gpu".into(),
                    value: "0".into(),
                }],
                time,
                value: (s * 10) as f64 + t as f64,
                received_at: time + 1_000_000,
            });
        }
    }
    let mut objects = encode_raw_objects(&points, "relay-a").unwrap();
    assert_eq!(objects.len(), 1);
    objects.remove(0).2.to_vec()
}

/// Rewrites `src` with pyarrow into `out`: `how` is `slice` (row 5 alone,
/// the dictionaries whole), `plain` (no dictionary encoding) or `groups`
/// (row groups of 16 rows).
fn pyarrow_rewrite(src: &FsPath, out: &FsPath, how: &str) {
    let script = r#"
import sys
import pyarrow.parquet as pq
src, out, how = sys.argv[1:4]
table = pq.read_table(src)
if how == "slice":
    pq.write_table(table.slice(5, 1), out)
elif how == "plain":
    pq.write_table(table, out, use_dictionary=False)
elif how == "groups":
    pq.write_table(table, out, row_group_size=16)
meta = pq.ParquetFile(out).metadata
print(meta.num_rows, meta.num_row_groups)
"#;
    let run = Command::new("python3")
        .args(["-c", script])
        .arg(src)
        .arg(out)
        .arg(how)
        .output()
        .expect("python3 runs (README's test command installs it with pyarrow)");
    assert!(
        run.status.success(),
        "pyarrow {how}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

async fn compact(dir: &FsPath, work_dir: &FsPath) -> Outcome {
    let settings = Settings::from_args(["--work-dir", work_dir.to_str().unwrap()]).unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap());
    let compactor = Compactor::with_store(settings, store);
    let unit = Unit {
        hour: Hour::parse(HOUR).unwrap(),
        shard: 0,
        shards: 1,
    };
    match compactor.run_unit(unit, false).await.result {
        UnitResult::Ok(o) => o,
        UnitResult::Failed { error, .. } => panic!("the unit failed: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_written_by_pyarrow_are_compacted_not_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("relay-object.parquet");
    std::fs::write(&original, relay_object()).unwrap();
    let hour = Hour::parse(HOUR).unwrap();
    for (seq, how) in ["slice", "plain", "groups"].into_iter().enumerate() {
        let key = raw_object_key("raw", hour, "pyarrow", 1_700_000_000_000, seq as u64);
        let path = dir.path().join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        pyarrow_rewrite(&original, &path, how);
    }
    // A work directory two levels below one that exists.
    let work = dir.path().join("work/compactor");
    let outcome = compact(dir.path(), &work).await;
    let Outcome::Compacted(c) = outcome else {
        panic!("expected a compaction: {outcome:?}");
    };
    assert!(c.quarantined.is_empty(), "{c:?}");
    assert_eq!(c.raw_objects, 3, "{c:?}");
    // 1 + 300 + 300 rows read; the slice and the groups are copies of rows
    // of the plain one: 300 keys.
    assert_eq!(
        (c.rows_in, c.rows_out, c.duplicates),
        (601, 300, 301),
        "{c:?}"
    );
    assert_eq!(c.value_conflicts, 0, "{c:?}");
    assert!(work.is_dir(), "the work directory was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_directory_that_cannot_be_made_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("relay-object.parquet");
    let bytes = relay_object();
    std::fs::write(&original, &bytes).unwrap();
    let key = raw_object_key("raw", Hour::parse(HOUR).unwrap(), "relay-a", 1, 1);
    let path = dir.path().join(&key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    // Below a file: no directory can be made there.
    let work = original.join("work");
    let settings = Settings::from_args(["--work-dir", work.to_str().unwrap()]).unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let unit = Unit {
        hour: Hour::parse(HOUR).unwrap(),
        shard: 0,
        shards: 1,
    };
    let report = Compactor::with_store(settings, store)
        .run_unit(unit, false)
        .await;
    match report.result {
        UnitResult::Failed { error, .. } => {
            assert!(error.contains(work.to_str().unwrap()), "{error}");
        }
        other => panic!("expected a failure naming the work directory: {other:?}"),
    }
}
