//! Late data for compacted hours: folded beside the compacted files (a late
//! file of new keys; the files where a late copy wins rewritten), read once
//! by glob readers (pyarrow, DuckDB) and manifest readers, and a major
//! compaction equal to compacting every raw object from scratch. The crash
//! at every step of a late fold is `crash_then_rerun` in `main.rs`.

use horizon_compactor::{Compacted, FoldKind, Selection};
use horizon_e2e::rawdata::{Expected, check_compacted, points, put_late, put_raw};
use horizon_shared::raw::RawPoint;

use super::{Backend, TestStore, closed_now, compacted_stats, hours, initial, initial_under, run};

on_every_store!(
    a_late_point_is_read_once_by_glob_and_manifest_readers,
    a_late_duplicate_is_never_read_twice_and_the_rule_picks_the_copy,
    a_major_compaction_equals_a_compaction_from_scratch,
    a_relay_s_late_object_is_split_by_hour_and_folded,
);

/// The one unit a run committed.
fn only(r: &horizon_compactor::Report) -> Compacted {
    let stats = compacted_stats(r);
    assert_eq!(stats.len(), 1, "{r:#?}");
    stats.into_iter().next().unwrap()
}

/// Compacts the three hours, then checks that nothing is late yet.
async fn compacted_hours(ts: &TestStore) -> Expected {
    let want = initial(ts).await;
    let r = run(&ts.compactor(&[]), &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert!(compacted_stats(&r).iter().all(|s| s.kind == FoldKind::Full));
    want
}

/// Reads the dataset with DuckDB's glob (local directory only: DuckDB has
/// no S3 client here) and checks that no key is read twice.
fn duckdb_reads_once(ts: &TestStore, rows: usize) {
    if ts.s3.is_some() {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/duckdb_keys.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(format!("{}/compacted", ts.url))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["doubled"], 0, "DuckDB read a key twice: {v}");
    assert_eq!(v["rows"], rows, "DuckDB rows: {v}");
    assert_eq!(v["keys"], rows, "DuckDB keys: {v}");
}

/// Every reader sees `want`, each key once.
fn every_reader_sees(ts: &TestStore, want: &Expected) {
    check_compacted(&ts.read(), want);
    check_compacted(&ts.read_manifests(), want);
    duckdb_reads_once(ts, want.rows.len());
}

async fn a_late_point_is_read_once_by_glob_and_manifest_readers(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut want = compacted_hours(&ts).await;
    let files_before: usize = ts
        .read()
        .files
        .iter()
        .filter(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .contains(&hours()[1].partition())
        })
        .count();
    // One point of a node the hour has never seen.
    let mut p = points(hours()[1], 1, 1, 3600, 3_000_000_000, 5.0);
    p[0].node = "node-late".into();
    put_raw(&ts.store, "raw", "relay-c", 70, &p).await;
    want.add(&p, "relay-c");

    let s = only(&run(&ts.compactor(&[]), &closed_now()).await);
    assert_eq!(s.kind, FoldKind::Late, "{s:?}");
    assert_eq!(
        (s.late_rows, s.files_rewritten, s.files),
        (1, 0, 1),
        "{s:?}"
    );
    assert_eq!(s.rows_out as usize, want.hour(hours()[1]));
    every_reader_sees(&ts, &want);
    // The hour's committed files are untouched: one file more than before.
    let now: usize = ts
        .read()
        .files
        .iter()
        .filter(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .contains(&hours()[1].partition())
        })
        .count();
    assert_eq!(now, files_before + 1);
    // And a run with nothing new changes nothing.
    let before = ts.dataset().await;
    run(&ts.compactor(&[]), &Selection::Hours(hours().to_vec())).await;
    assert_eq!(ts.dataset().await, before);
}

/// Copies of `every`-th point of the initial data of the middle hour,
/// received `recv_delay_ns` after their time, with values from `salt`.
fn copies(every: usize, skip: usize, recv_delay_ns: i64, salt: f64) -> Vec<RawPoint> {
    points(hours()[1], 4, 6, 20, recv_delay_ns, salt)
        .into_iter()
        .skip(skip)
        .step_by(every)
        .collect()
}

async fn a_late_duplicate_is_never_read_twice_and_the_rule_picks_the_copy(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut want = compacted_hours(&ts).await;
    // relay-a's points were received 1 ms after their time, relay-b's
    // (every second one) 9 ms after. Late copies:
    // - received later than both (a resend after a lost ack): they win;
    let later = copies(97, 0, 60_000_000, 3.0);
    // - received earlier than the kept copy: they lose;
    let earlier = copies(89, 1, 500_000, 4.0);
    // - identical to relay-a's copies (a raw object stored twice): nothing changes.
    let same = copies(83, 3, 1_000_000, 0.0);
    put_raw(&ts.store, "raw", "relay-d", 71, &later).await;
    put_raw(&ts.store, "raw", "relay-a", 72, &earlier).await;
    put_raw(&ts.store, "raw", "relay-a", 73, &same).await;
    let before = want.clone();
    want.add(&later, "relay-d");
    want.add(&earlier, "relay-a");
    want.add(&same, "relay-a");
    assert_eq!(want.rows.len(), before.rows.len(), "no new keys");
    // The model's verdict: keys whose kept copy changed.
    let replaced = want
        .rows
        .iter()
        .filter(|(k, v)| before.rows[*k] != **v)
        .count();
    let mut late_keys = Expected::default();
    late_keys.add(&later, "relay-d");
    late_keys.add(&earlier, "relay-a");
    late_keys.add(&same, "relay-a");
    assert!(replaced > 0 && replaced < late_keys.rows.len());

    let s = only(&run(&ts.compactor(&[]), &closed_now()).await);
    assert_eq!(s.kind, FoldKind::Late, "{s:?}");
    assert_eq!(
        s.late_rows, 0,
        "every late key is already in the hour: {s:?}"
    );
    assert_eq!(s.late_replaced as usize, replaced, "{s:?}");
    assert_eq!(
        s.late_dropped as usize,
        late_keys.rows.len() - replaced,
        "{s:?}"
    );
    assert!(s.files_rewritten >= 1, "{s:?}");
    every_reader_sees(&ts, &want);
}

async fn a_major_compaction_equals_a_compaction_from_scratch(backend: Backend) {
    let ts = TestStore::new(backend).await;
    compacted_hours(&ts).await;
    let h = hours()[1];
    let fresh = |node: &str, salt: f64| {
        let mut p = points(h, 1, 3, 300, 2_000_000, salt);
        p.iter_mut().for_each(|p| p.node = node.into());
        p
    };
    let batches: [(&str, u64, Vec<RawPoint>); 3] = [
        ("relay-c", 80, fresh("node-late-1", 1.0)),
        ("relay-c", 81, fresh("node-late-2", 2.0)),
        ("relay-d", 82, copies(37, 2, 70_000_000, 6.0)),
    ];
    // Two late folds (two late files), then a third that would pass
    // --late-max-files: a major compaction.
    for (i, (relay, seq, p)) in batches.iter().enumerate() {
        put_raw(&ts.store, "raw", relay, *seq, p).await;
        let c = ts.compactor(&["--late-max-files", "2"]);
        let s = only(&run(&c, &closed_now()).await);
        let want = if i < 2 {
            FoldKind::Late
        } else {
            FoldKind::Full
        };
        assert_eq!(s.kind, want, "batch {i}: {s:?}");
    }
    let m = horizon_compactor::commit::load_manifests(
        &ts.store,
        &horizon_compactor::Keys::new("raw", "compacted"),
        horizon_compactor::Unit {
            hour: h,
            shard: 0,
            shards: 1,
        },
    )
    .await
    .unwrap()
    .0
    .unwrap();
    assert!(m.files.iter().all(|f| !f.late) && m.late_since_ms.is_none());

    // The same raw objects, all at once, under other prefixes.
    initial_under(&ts, "scratch-raw").await;
    for (relay, seq, p) in &batches {
        put_raw(&ts.store, "scratch-raw", relay, *seq, p).await;
    }
    let c = ts.compactor(&[
        "--raw-prefix",
        "scratch-raw",
        "--compacted-prefix",
        "scratch",
    ]);
    run(&c, &closed_now()).await;
    let in_hour = |ds: horizon_e2e::ParquetDataset| {
        let mut rows: Vec<String> = ds
            .rows
            .iter()
            .filter(|r| r["time"].as_i64().unwrap() / 3_600_000_000_000 == h.start_unix_secs / 3600)
            .map(|r| r.to_string())
            .collect();
        rows.sort();
        rows
    };
    let (incremental, scratch) = (in_hour(ts.read()), in_hour(ts.read_prefix("scratch")));
    assert!(!scratch.is_empty());
    assert_eq!(incremental.len(), scratch.len());
    assert!(
        incremental == scratch,
        "the major compaction differs from scratch"
    );
}

async fn a_relay_s_late_object_is_split_by_hour_and_folded(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut want = compacted_hours(&ts).await;
    // One flush's late object: a new node in the first and last hours, and
    // resends (received later: they win) of the middle hour.
    let mut p: Vec<RawPoint> = [hours()[0], hours()[2]]
        .into_iter()
        .flat_map(|h| points(h, 1, 2, 600, 4_000_000, 8.0))
        .map(|mut p| {
            p.node = "node-replayed".into();
            p
        })
        .collect();
    p.extend(copies(53, 0, 80_000_000, 9.0));
    put_late(&ts.store, "raw", "relay-e", 90, &p).await;
    want.add(&p, "relay-e");

    let r = run(&ts.compactor(&[]), &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert_eq!(
        (r.routed.late_objects, r.routed.hour_objects, r.routed.rows),
        (1, 3, p.len() as u64),
        "{r:#?}"
    );
    let stats = compacted_stats(&r);
    assert_eq!(stats.len(), 3, "{r:#?}");
    assert!(stats.iter().all(|s| s.kind == FoldKind::Late), "{r:#?}");
    assert!(
        ts.keys("raw").await.is_empty(),
        "late and routed objects gone"
    );
    every_reader_sees(&ts, &want);
}
