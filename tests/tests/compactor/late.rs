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
    a_resend_is_folded_without_writing_a_compacted_byte,
    a_late_copy_with_another_value_wins_by_the_rule_and_only_its_file_is_rewritten,
    a_major_compaction_after_resends_equals_a_compaction_from_scratch,
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
    let files_before = hour_files(&ts).await;
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
    let now = hour_files(&ts).await;
    assert_eq!(
        now.len(),
        files_before.len() + 1,
        "{files_before:?} -> {now:?}"
    );
    assert!(
        files_before.iter().all(|f| now.contains(f)),
        "{files_before:?} -> {now:?}"
    );
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
    // - received later than both, with other values: they lose (the first
    //   received copy is kept);
    let later = copies(97, 0, 60_000_000, 3.0);
    // - received earlier than the kept copy: they win;
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

    equals_a_compaction_from_scratch(&ts, &batches).await;
}

/// The middle hour as compacted in `ts` equals a compaction of the initial
/// raw objects and `batches`, all at once, under other prefixes.
async fn equals_a_compaction_from_scratch(ts: &TestStore, batches: &[(&str, u64, Vec<RawPoint>)]) {
    let h = hours()[1];
    // The same raw objects, all at once, under other prefixes.
    initial_under(ts, "scratch-raw").await;
    for (relay, seq, p) in batches {
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
    // copies received later of the middle hour (they lose to the first
    // received).
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

/// Copies of every `every`-th point relay-a stored in the middle hour, as
/// they were (same values), received `after_ns` later: an agent's resend of
/// a window its relay stored but did not ack.
fn resends(every: usize, after_ns: i64) -> Vec<RawPoint> {
    points(hours()[1], 4, 6, 20, 1_000_000 + after_ns, 0.0)
        .into_iter()
        .step_by(every)
        .collect()
}

/// Committed keys of the middle hour's partition.
async fn hour_files(ts: &TestStore) -> Vec<String> {
    let part = hours()[1].partition();
    ts.dataset()
        .await
        .into_iter()
        .filter(|k| k.contains(&part) && k.ends_with(".parquet"))
        .collect()
}

async fn a_resend_is_folded_without_writing_a_compacted_byte(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut want = compacted_hours(&ts).await;
    let files_before = hour_files(&ts).await;
    // The agent's relay died after storing its batches; the agent resent
    // them through relay-b 30 minutes later.
    let resent = resends(7, 1_800_000_000_000);
    put_raw(&ts.store, "raw", "relay-b", 75, &resent).await;
    let before = want.clone();
    want.add(&resent, "relay-b");
    assert_eq!(want.rows, before.rows, "the model keeps the first copies");

    let s = only(&run(&ts.compactor(&[]), &closed_now()).await);
    assert_eq!(s.kind, FoldKind::Late, "{s:?}");
    assert_eq!(
        (
            s.files,
            s.bytes,
            s.files_rewritten,
            s.late_rows,
            s.late_replaced
        ),
        (0, 0, 0, 0, 0),
        "a resend writes no compacted byte: {s:?}"
    );
    assert_eq!(s.late_dropped as usize, resent.len(), "{s:?}");
    assert_eq!(
        (s.duplicates as usize, s.value_conflicts),
        (resent.len(), 0),
        "{s:?}"
    );
    assert_eq!(s.rows_in, s.rows_out + s.duplicates, "{s:?}");
    assert_eq!(hour_files(&ts).await, files_before, "the same files");
    every_reader_sees(&ts, &want);
}

async fn a_late_copy_with_another_value_wins_by_the_rule_and_only_its_file_is_rewritten(
    backend: Backend,
) {
    let ts = TestStore::new(backend).await;
    let mut want = initial(&ts).await;
    // The test store's small files (16 KiB): the hour spans several.
    let r = run(&ts.compactor(&[]), &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    let files_before = hour_files(&ts).await;
    assert!(files_before.len() >= 3, "{files_before:?}");
    let h = hours()[1];
    // A copy received before the kept one (relay-c's object was delayed),
    // with another value: it wins, and replaces the kept row.
    let earlier: Vec<RawPoint> = points(h, 4, 6, 20, 500_000, 42.0)
        .into_iter()
        .take(1)
        .collect();
    // A copy received after it, with another value: it loses, and is
    // counted as a conflict too.
    let later: Vec<RawPoint> = points(h, 4, 6, 20, 60_000_000, 43.0)
        .into_iter()
        .rev()
        .take(1)
        .collect();
    put_raw(&ts.store, "raw", "relay-c", 76, &earlier).await;
    put_raw(&ts.store, "raw", "relay-d", 77, &later).await;
    want.add(&earlier, "relay-c");
    want.add(&later, "relay-d");

    let s = only(&run(&ts.compactor(&[]), &closed_now()).await);
    assert_eq!(s.kind, FoldKind::Late, "{s:?}");
    assert_eq!(
        (s.late_replaced, s.late_dropped, s.files_rewritten),
        (1, 1, 1),
        "only the file holding the replaced row is rewritten: {s:?}"
    );
    assert_eq!((s.duplicates, s.value_conflicts), (2, 2), "{s:?}");
    assert_eq!(s.rows_in, s.rows_out + s.duplicates, "{s:?}");
    let files_after = hour_files(&ts).await;
    let kept = files_before
        .iter()
        .filter(|f| files_after.contains(f))
        .count();
    assert_eq!(
        kept,
        files_before.len() - 1,
        "{files_before:?} -> {files_after:?}"
    );
    every_reader_sees(&ts, &want);
}

async fn a_major_compaction_after_resends_equals_a_compaction_from_scratch(backend: Backend) {
    let ts = TestStore::new(backend).await;
    compacted_hours(&ts).await;
    let batches: [(&str, u64, Vec<RawPoint>); 3] = [
        ("relay-b", 85, resends(7, 1_800_000_000_000)),
        ("relay-c", 86, resends(5, 2_400_000_000_000)),
        ("relay-d", 87, copies(37, 2, 70_000_000, 6.0)),
    ];
    // Two resends folded late at no cost, then a major compaction (a
    // late share of 0 calls for one).
    for (i, (relay, seq, p)) in batches.iter().enumerate() {
        put_raw(&ts.store, "raw", relay, *seq, p).await;
        let args: &[&str] = if i < 2 {
            &[]
        } else {
            &["--late-major-share", "0"]
        };
        let s = only(&run(&ts.compactor(args), &closed_now()).await);
        let (kind, bytes) = if i < 2 {
            (FoldKind::Late, 0)
        } else {
            (FoldKind::Full, s.bytes)
        };
        assert_eq!((s.kind, s.bytes), (kind, bytes), "batch {i}: {s:?}");
        assert_eq!(s.rows_in, s.rows_out + s.duplicates, "batch {i}: {s:?}");
    }
    equals_a_compaction_from_scratch(&ts, &batches).await;
}
