//! The compactor against a local directory and against moto (S3 API), every
//! scenario on both (`on_every_store!`): raw objects written by the relays'
//! own encoder, duplicates across objects, late objects, crashes at every
//! commit step, leases, shards, unreadable objects; the result read back by
//! pyarrow and checked against a model. Late data folded beside compacted
//! hours: `late.rs`. The stores and their readers: `store.rs`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use horizon_compactor::{
    Compacted, Compactor, Fault, Outcome, Report, RunOptions, Selection, UnitResult,
};
use horizon_e2e::rawdata::{Expected, check_compacted, points, put_raw};
use horizon_shared::clock::unix_ms_now;
use horizon_shared::layout::Hour;
use object_store::path::Path;

/// Declares a scenario's tests: one on a local directory, one on S3 (moto).
/// A scenario is an `async fn(Backend)` of the same name.
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local_directory() {
                super::$scenario(Backend::Local).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3_on_moto() {
                super::$scenario(Backend::Moto).await;
            }
        }
    )*};
}

mod late;
mod rollups;
mod store;

use store::{Backend, TestStore};

on_every_store!(
    compacts_closed_hours_and_folds_late_data,
    a_crash_up_to_the_first_copy_then_a_rerun_gives_the_same_rows,
    a_crash_after_the_first_copy_then_a_rerun_gives_the_same_rows,
    a_crash_in_an_hour_s_first_compaction_then_a_rerun_gives_the_same_rows,
    keep_retention_leaves_raw_objects_and_never_folds_them_twice,
    shards_split_an_hour_and_raw_objects_go_when_every_shard_has_them,
    an_unreadable_raw_object_is_quarantined_and_the_rest_compacted,
    an_object_quarantined_alone_commits_no_generation,
    no_unit_starts_after_the_start_deadline,
);

/// Three consecutive hours long closed.
fn hours() -> [Hour; 3] {
    let h = Hour::parse("2025-06-01T10").unwrap();
    [h, h.next(), h.next().next()]
}

/// Three closed hours; relay-b's object overlaps half of relay-a's points
/// with later receipts and other values (relay-a's, received first, are
/// kept), and relay-a wrote one object twice (a resend after a lost ack).
async fn initial(ts: &TestStore) -> Expected {
    initial_under(ts, "raw").await
}

/// `initial`'s raw objects under a given raw prefix.
async fn initial_under(ts: &TestStore, raw_prefix: &str) -> Expected {
    let mut want = Expected::default();
    for (i, h) in hours().into_iter().enumerate() {
        let a = points(h, 4, 6, 20, 1_000_000, 0.0);
        let b: Vec<_> = points(h, 4, 6, 20, 9_000_000, 0.5)
            .into_iter()
            .step_by(2)
            .collect();
        put_raw(&ts.store, raw_prefix, "relay-a", i as u64 * 10, &a).await;
        put_raw(&ts.store, raw_prefix, "relay-a", i as u64 * 10 + 1, &a).await;
        put_raw(&ts.store, raw_prefix, "relay-b", i as u64 * 10, &b).await;
        want.add(&a, "relay-a");
        want.add(&b, "relay-b");
    }
    want
}

/// Late data for the middle hour: new series, and copies of old points
/// with other values received before the kept copies (a relay's delayed
/// object): they win, so the files holding them are rewritten.
async fn late(ts: &TestStore, want: &mut Expected) {
    let h = hours()[1];
    let new_series = points(h, 2, 9, 120, 1_000, 100.0)
        .into_iter()
        .filter(|p| p.labels[0].value == "2")
        .collect::<Vec<_>>();
    let resent: Vec<_> = points(h, 4, 6, 20, 500_000, 7.0)
        .into_iter()
        .step_by(5)
        .collect();
    put_raw(&ts.store, "raw", "relay-c", 99, &new_series).await;
    put_raw(&ts.store, "raw", "relay-a", 98, &resent).await;
    want.add(&new_series, "relay-c");
    want.add(&resent, "relay-a");
}

fn closed_now() -> Selection {
    Selection::Closed {
        now_ms: unix_ms_now(),
    }
}

async fn run(c: &Compactor, sel: &Selection) -> Report {
    c.run(sel, &RunOptions::default(), &()).await.expect("run")
}

fn outcomes(r: &Report) -> Vec<&UnitResult> {
    r.units.iter().map(|u| &u.result).collect()
}

/// Stats of the units that committed a generation.
fn compacted_stats(r: &Report) -> Vec<Compacted> {
    r.units
        .iter()
        .filter_map(|u| match &u.result {
            UnitResult::Ok(Outcome::Compacted(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Whether every unit found nothing new.
fn all_up_to_date(r: &Report) -> bool {
    outcomes(r)
        .iter()
        .all(|o| matches!(o, UnitResult::Ok(Outcome::UpToDate { .. })))
}

fn compacted(r: &Report) -> usize {
    compacted_stats(r).len()
}

async fn compacts_closed_hours_and_folds_late_data(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut want = initial(&ts).await;
    // An hour still open must be left alone.
    let open = Hour::of_secs(unix_ms_now() / 1000);
    put_raw(
        &ts.store,
        "raw",
        "relay-a",
        500,
        &points(open, 1, 1, 600, 0, 0.0),
    )
    .await;

    let c = ts.compactor(&[]);
    let r = run(&c, &closed_now()).await;
    assert_eq!(compacted(&r), 3, "{r:#?}");
    assert_eq!(r.failures(), 0);
    check_compacted(&ts.read(), &want);
    // Several files per hour (16 KiB target), raw objects of closed hours gone.
    assert!(
        ts.read().files.len() > 3,
        "files: {}",
        ts.read().files.len()
    );
    for h in hours() {
        assert!(
            ts.keys(&format!("raw/{}", h.partition())).await.is_empty(),
            "raw of {h} left"
        );
    }
    assert_eq!(
        ts.keys(&format!("raw/{}", open.partition())).await.len(),
        1,
        "open hour untouched"
    );
    assert!(ts.keys("compacted/_staging").await.is_empty());

    // Late objects for the middle hour are folded in by the next run.
    late(&ts, &mut want).await;
    let r = run(&c, &closed_now()).await;
    assert_eq!(compacted(&r), 1, "{r:#?}");
    match outcomes(&r)[0] {
        UnitResult::Ok(Outcome::Compacted(s)) => {
            assert_eq!(s.generation, 2);
            assert_eq!(s.rows_out as usize, want.hour(hours()[1]));
            assert_eq!(s.raw_objects, 2);
        }
        other => panic!("{other:?}"),
    }
    check_compacted(&ts.read(), &want);

    // Nothing new: nothing changes, not even a file name.
    let before = ts.dataset().await;
    let r = run(&c, &closed_now()).await;
    assert!(r.units.is_empty(), "{r:#?}");
    let r = run(&c, &Selection::Hours(hours().to_vec())).await;
    assert!(all_up_to_date(&r), "{r:#?}");
    assert_eq!(ts.dataset().await, before);
    check_compacted(&ts.read(), &want);
}

/// A clock the test moves: leases of "crashed" runs expire without waiting.
fn clock() -> (Arc<AtomicI64>, Arc<dyn Fn() -> i64 + Send + Sync>) {
    let t = Arc::new(AtomicI64::new(unix_ms_now()));
    let c = Arc::clone(&t);
    (t, Arc::new(move || c.load(Ordering::SeqCst)))
}

async fn crash_then_rerun(ts: &TestStore, fault: Fault, first_run: bool) {
    let (t, now) = clock();
    let mut want = initial(ts).await;
    if !first_run {
        run(&ts.compactor(&[]), &closed_now()).await;
        late(ts, &mut want).await;
    }
    let crashing = ts
        .compactor(&[])
        .with_clock(Arc::clone(&now))
        .with_fault(Some(fault));
    let r = run(&crashing, &Selection::Hours(vec![hours()[1]])).await;
    match outcomes(&r)[0] {
        UnitResult::Failed { error, .. } => {
            assert!(error.contains("injected"), "{fault:?}: {error}")
        }
        other => panic!("{fault:?}: the fault was not reached: {other:?}"),
    }
    if fault == Fault::AfterStaging {
        // Staged files are invisible to readers: no key is doubled.
        let ds = ts.read();
        let mut keys: Vec<_> = ds
            .rows
            .iter()
            .map(|r| {
                (
                    r["node"].to_string(),
                    r["series_id"].to_string(),
                    r["time"].to_string(),
                )
            })
            .collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(
            keys.len(),
            n,
            "a reader saw doubled rows after a crash before the commit"
        );
    }
    // While the crashed run's lease lasts, another run leaves the hour alone.
    let rerun = ts.compactor(&[]).with_clock(Arc::clone(&now));
    let r = run(&rerun, &Selection::Hours(vec![hours()[1]])).await;
    assert!(
        matches!(outcomes(&r)[0], UnitResult::Ok(Outcome::Busy { .. })),
        "{fault:?}: {r:#?}"
    );
    // After it expires, a run finishes the job.
    t.fetch_add(1_801_000, Ordering::SeqCst);
    let r = run(&rerun, &closed_now()).await;
    assert_eq!(r.failures(), 0, "{fault:?}: {r:#?}");
    check_compacted(&ts.read(), &want);
    check_compacted(&ts.read_manifests(), &want);
    // The rollups (minute files of every unit, the day's 1-hour files) are
    // those of the rows, and no rollup or its replacement is read twice.
    rollups::check_rollups(ts);
    assert!(ts.keys("rollups/_staging").await.is_empty(), "{fault:?}");
    for h in hours() {
        assert!(
            ts.keys(&format!("raw/{}", h.partition())).await.is_empty(),
            "{fault:?}: raw of {h} left"
        );
    }
    if !first_run {
        // The late data went to a late file (a late fold, not a rewrite of the hour).
        let (m, _) = horizon_compactor::commit::load_manifests(
            &ts.store,
            &horizon_compactor::Keys::new("raw", "compacted"),
            horizon_compactor::Unit {
                hour: hours()[1],
                shard: 0,
                shards: 1,
            },
        )
        .await
        .unwrap();
        assert!(
            m.unwrap().files.iter().any(|f| f.late),
            "{fault:?}: no late file"
        );
    }
    assert!(
        ts.keys("compacted/_staging").await.is_empty(),
        "{fault:?}: staging left"
    );
    let manifests = ts
        .keys(&format!("compacted/_manifests/{}", hours()[1].partition()))
        .await;
    assert_eq!(manifests.len(), 1, "{fault:?}: {manifests:?}");
    // And one more run changes nothing.
    let before = ts.dataset().await;
    let r = run(&rerun, &Selection::Hours(hours().to_vec())).await;
    assert_eq!(r.failures(), 0);
    assert_eq!(ts.dataset().await, before, "{fault:?}");
}

// Every fault point (`Fault::ALL`) of a late fold (a late file, and the
// files where a late copy wins rewritten), in two halves so that each test
// stays well inside the per-test time limit on moto.

async fn a_crash_up_to_the_first_copy_then_a_rerun_gives_the_same_rows(backend: Backend) {
    for fault in &Fault::ALL[..3] {
        crash_then_rerun(&TestStore::new(backend).await, *fault, false).await;
    }
}

async fn a_crash_after_the_first_copy_then_a_rerun_gives_the_same_rows(backend: Backend) {
    for fault in &Fault::ALL[3..] {
        crash_then_rerun(&TestStore::new(backend).await, *fault, false).await;
    }
}

async fn a_crash_in_an_hour_s_first_compaction_then_a_rerun_gives_the_same_rows(backend: Backend) {
    for fault in [
        Fault::AfterStaging,
        Fault::AfterCommit,
        Fault::AfterFirstCopy,
    ] {
        crash_then_rerun(&TestStore::new(backend).await, fault, true).await;
    }
}

async fn keep_retention_leaves_raw_objects_and_never_folds_them_twice(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut want = initial(&ts).await;
    let c = ts.compactor(&["--raw-retention", "keep"]);
    run(&c, &closed_now()).await;
    let raw_before = ts.keys("raw").await;
    assert_eq!(raw_before.len(), 9);
    let before = ts.dataset().await;
    let r = run(&c, &closed_now()).await;
    assert!(all_up_to_date(&r), "{r:#?}");
    assert_eq!(ts.dataset().await, before);
    late(&ts, &mut want).await;
    let r = run(&c, &closed_now()).await;
    let stats = compacted_stats(&r);
    assert_eq!(stats.len(), 1, "{r:#?}");
    assert_eq!(stats[0].raw_objects, 2, "only the late objects are read");
    check_compacted(&ts.read(), &want);
    assert_eq!(ts.keys("raw").await.len(), 11);
}

async fn shards_split_an_hour_and_raw_objects_go_when_every_shard_has_them(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let want = initial(&ts).await;
    let c = ts.compactor(&["--shards", "3"]);
    let h = hours()[0];
    let only0 = RunOptions {
        shard: Some(0),
        ..RunOptions::default()
    };
    let r = c
        .run(&Selection::Hours(vec![h]), &only0, &())
        .await
        .unwrap();
    assert_eq!(compacted(&r), 1);
    assert_eq!(
        ts.keys(&format!("raw/{}", h.partition())).await.len(),
        3,
        "shards 1 and 2 still need them"
    );
    let r = run(&c, &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert_eq!(r.units.len(), 9, "3 hours x 3 shards: {r:#?}");
    assert!(ts.keys("raw").await.is_empty());
    check_compacted(&ts.read(), &want);
    let files = ts.keys(&format!("compacted/{}", h.partition())).await;
    for s in 0..3 {
        let has_nodes =
            (0..4).any(|n| horizon_compactor::merge::shard_of(&format!("node-{n:03}"), 3) == s);
        let has_files = files.iter().any(|f| f.contains(&format!("part-s000{s}-")));
        assert_eq!(has_files, has_nodes, "shard {s}: {files:?}");
    }
    // An hour keeps its shard count: a later run with another setting uses 3.
    let other = ts.compactor(&["--shards", "5"]);
    let units = other.units(&Selection::Hours(vec![h]), None).await.unwrap();
    assert_eq!(units.len(), 3);
}

async fn an_unreadable_raw_object_is_quarantined_and_the_rest_compacted(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let want = initial(&ts).await;
    let h = hours()[2];
    let bad = Path::from(format!("raw/{}/relay-x-1-00000001.parquet", h.partition()));
    object_store::ObjectStoreExt::put(&*ts.store, &bad, b"not parquet at all".to_vec().into())
        .await
        .unwrap();
    let r = run(&ts.compactor(&[]), &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    let quarantined: Vec<String> = compacted_stats(&r)
        .into_iter()
        .flat_map(|s| s.quarantined)
        .collect();
    assert_eq!(quarantined, vec![bad.to_string()]);
    assert_eq!(
        ts.keys("raw/_quarantine").await,
        vec![format!(
            "raw/_quarantine/{}/relay-x-1-00000001.parquet",
            h.partition()
        )]
    );
    check_compacted(&ts.read(), &want);
}

async fn an_object_quarantined_alone_commits_no_generation(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let want = initial(&ts).await;
    let r = run(&ts.compactor(&[]), &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    let before = ts.dataset().await;
    let h = hours()[2];
    let bad = Path::from(format!("raw/{}/relay-x-1-00000002.parquet", h.partition()));
    object_store::ObjectStoreExt::put(&*ts.store, &bad, b"PAR1 nor this".to_vec().into())
        .await
        .unwrap();
    let r = run(&ts.compactor(&[]), &Selection::Hours(vec![h])).await;
    match outcomes(&r).as_slice() {
        [
            UnitResult::Ok(Outcome::UpToDate {
                generation,
                quarantined,
                ..
            }),
        ] => {
            assert_eq!(*generation, 1);
            assert_eq!(quarantined, &vec![bad.to_string()]);
        }
        other => panic!("expected the unit up to date, its object moved aside: {other:#?}"),
    }
    assert_eq!(ts.dataset().await, before, "no new generation, no file");
    check_compacted(&ts.read(), &want);
}

async fn no_unit_starts_after_the_start_deadline(backend: Backend) {
    let ts = TestStore::new(backend).await;
    initial(&ts).await;
    let c = ts.compactor(&[]);
    let late = RunOptions {
        start_deadline_ms: Some(unix_ms_now() - 1),
        ..RunOptions::default()
    };
    let r = c.run(&closed_now(), &late, &()).await.unwrap();
    assert!(r.units.is_empty());
    assert_eq!(r.not_started.len(), 3, "{r:#?}");
    assert!(ts.dataset().await.is_empty(), "nothing may be written");
    assert_eq!(ts.keys("raw").await.len(), 9);
}
