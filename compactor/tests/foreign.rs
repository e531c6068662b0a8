//! Raw objects written by another Parquet writer are compacted, not moved
//! aside: pyarrow rewrites a relay's object as a one-row slice (its
//! dictionaries keep every entry of the object it was sliced from), with
//! plain-encoded strings, and in several row groups. The rows come out
//! exactly once, and nothing is quarantined. And a work directory that does
//! not exist yet is created. Objects of raw schema version 1 (no
//! `metric_type`), as relays before version 2 wrote them, compact with
//! version-2 objects of the same hour into version-2 files.

#![allow(clippy::unwrap_used)]

use std::path::Path as FsPath;
use std::process::Command;
use std::sync::Arc;

use horizon_compactor::{Compactor, Outcome, Settings, Unit, UnitResult};
use horizon_shared::layout::{Hour, raw_object_key};
use horizon_shared::proto::{Label, MetricType};
use horizon_shared::raw::{self, RawPoint, encode_raw_objects};
use object_store::local::LocalFileSystem;

const HOUR: &str = "2025-06-01T10";

/// One relay object: 75 metrics of one node (a `metric` dictionary of 75
/// entries), 4 points each.
fn relay_object() -> Vec<u8> {
    node_object("gpu-node-001", 1_000_000)
}

/// [`relay_object`]'s points for `node`, received `delay_ns` after their
/// time, all counters.
fn node_object(node: &str, delay_ns: i64) -> Vec<u8> {
    let hour = Hour::parse(HOUR).unwrap();
    let mut points = Vec::new();
    for s in 0..75 {
        for t in 0..4i64 {
            let time = (hour.start_unix_secs + t * 10) * 1_000_000_000;
            points.push(RawPoint {
                node: node.into(),
                metric: format!("DCGM_FI_DEV_FIELD_{s:02}"),
                labels: vec![Label {
                    key: "gpu".into(),
                    value: "0".into(),
                }],
                time,
                value: (s * 10) as f64 + t as f64,
                received_at: time + delay_ns,
                metric_type: MetricType::Counter,
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

/// `bytes` (a relay's object) as a relay before raw schema version 2 wrote
/// it: the version-1 columns (all but `metric_type`), the same writer
/// properties, `horizon.schema = 1`.
fn as_version_1(bytes: Vec<u8>) -> Vec<u8> {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::metadata::KeyValue;
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let v1 = raw::raw_schema_v1();
    let columns: Vec<usize> = (0..v1.fields().len()).collect();
    let props = raw::raw_writer_properties(false)
        .into_builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            raw::SCHEMA_KEY.into(),
            "1".to_owned(),
        )]))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, v1.clone(), Some(props)).unwrap();
    for b in &batches {
        let b = b.project(&columns).unwrap();
        assert_eq!(b.schema().fields(), v1.fields());
        w.write(&b).unwrap();
    }
    w.close().unwrap();
    out
}

/// A file's `horizon.*` key-value metadata.
type HorizonMetadata = Vec<(String, String)>;

/// A compacted row's node, time and metric type.
type TypedRow = (String, i64, String);

/// Every compacted file under `dir`: its key-value metadata and its rows'
/// (node, time, metric type).
fn compacted_rows(dir: &FsPath) -> (Vec<HorizonMetadata>, Vec<TypedRow>) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, TimestampNanosecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut files = Vec::new();
    let mut stack = vec![dir.join("compacted")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            if p.is_dir() && !name.starts_with('_') {
                stack.push(p);
            } else if name.ends_with(".parquet") {
                files.push(p);
            }
        }
    }
    let (mut metadata, mut rows) = (Vec::new(), Vec::new());
    for f in files {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap()).unwrap();
        let kv = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .into_iter()
            .flatten()
            .filter(|k| k.key.starts_with("horizon."))
            .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
            .collect();
        metadata.push(kv);
        assert_eq!(reader.schema().fields(), raw::raw_schema().fields());
        for b in reader.build().unwrap() {
            let b = b.unwrap();
            let s = b.schema();
            let dict = |name: &str, i: usize| {
                let d = b
                    .column(s.index_of(name).unwrap())
                    .as_dictionary::<Int32Type>();
                let k = d.keys().value(i) as usize;
                d.values().as_string::<i32>().value(k).to_owned()
            };
            let time = b
                .column(s.index_of("time").unwrap())
                .as_primitive::<TimestampNanosecondType>();
            for i in 0..b.num_rows() {
                rows.push((
                    dict("node", i),
                    time.value(i),
                    dict(raw::METRIC_TYPE_COLUMN, i),
                ));
            }
        }
    }
    (metadata, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_schema_version_1_and_2_compact_together_into_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let hour = Hour::parse(HOUR).unwrap();
    let put = |relay: &str, bytes: Vec<u8>| {
        let path = dir
            .path()
            .join(raw_object_key("raw", hour, relay, 1_700_000_000_000, 1));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    // An old relay's object of node 1 and node 2, received first; a new
    // relay's object of node 1 (the same points, received later: copies
    // the old object's beat) and node 3, all counters.
    put(
        "relay-old",
        as_version_1(node_object("gpu-node-001", 1_000_000)),
    );
    put(
        "relay-old2",
        as_version_1(node_object("gpu-node-002", 1_000_000)),
    );
    put("relay-new", node_object("gpu-node-001", 9_000_000));
    put("relay-new2", node_object("gpu-node-003", 1_000_000));
    let outcome = compact(dir.path(), &dir.path().join("work")).await;
    let Outcome::Compacted(c) = outcome else {
        panic!("expected a compaction: {outcome:?}");
    };
    assert!(c.quarantined.is_empty(), "{c:?}");
    assert_eq!((c.rows_in, c.rows_out), (1200, 900), "{c:?}");
    let (metadata, rows) = compacted_rows(dir.path());
    assert!(!metadata.is_empty());
    for kv in &metadata {
        assert!(
            kv.contains(&("horizon.schema".into(), "2".into())),
            "{kv:?}"
        );
        assert!(
            kv.contains(&("horizon.compacted".into(), "true".into())),
            "{kv:?}"
        );
    }
    assert_eq!(rows.len(), 900);
    for (node, time, t) in &rows {
        // Node 1's kept copies are the old relay's, received first.
        let want = match node.as_str() {
            "gpu-node-001" | "gpu-node-002" => "unknown",
            _ => "counter",
        };
        assert_eq!(t, want, "{node} at {time}");
    }
}
