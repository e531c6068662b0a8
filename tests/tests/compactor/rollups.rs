//! Rollups beside the compacted hours, checked after every step against an
//! independent computation: DuckDB GROUP BY over the compacted rows
//! (`tests/py/check_rollups.py`: every aggregate of every series-minute,
//! and of every series-hour of a closed day's 1-hour files). Steps: a first
//! compaction; late rows of new series, gaps filled inside minutes and
//! samples beside minutes' spans; late copies that win with another value;
//! a major compaction; the same with four shards; a backfill of hours
//! compacted before rollups existed. Crashes at every commit step are
//! `crash_then_rerun` in `main.rs`, which checks the rollups too.

use horizon_compactor::{Compacted, DayOutcome, DayResult, FoldKind, Keys, Selection, Unit};
use horizon_e2e::rawdata::{Expected, check_compacted, points, put_raw};
use horizon_shared::layout::Hour;
use horizon_shared::proto::MetricType;
use horizon_shared::raw::RawPoint;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::{Backend, TestStore, closed_now, compacted_stats, hours, initial, late, run};

on_every_store!(
    rollups_stay_exact_through_late_data_winning_copies_and_a_major_compaction,
    rollups_stay_exact_with_four_shards,
    a_backfill_adds_rollups_to_hours_compacted_without_them,
);

/// Runs the DuckDB check on the store and asserts every rollup row matches.
/// Returns the check's report.
pub(super) fn check_rollups(ts: &TestStore) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/check_rollups.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script);
    match &ts.s3 {
        None => cmd.args(["local", &ts.url]),
        Some((moto, _)) => cmd.args(["s3", &moto.addr.to_string(), "telemetry", "fleet"]),
    };
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "check_rollups: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for level in ["minute", "hour"] {
        let l = &v[level];
        for k in ["missing", "extra", "mismatched", "doubled"] {
            assert_eq!(l[k], 0, "{level} rollups, {k}: {v:#}");
        }
    }
    assert!(v["minute"]["expected"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        v["unsorted"],
        serde_json::json!([]),
        "rollup files out of order"
    );
    v
}

/// A counter of `node` through `hour`: samples at irregular times (a
/// reset at 94 s, minutes of one sample, steps across minute edges).
fn counter(hour: Hour, node: &str, skip: &[i64]) -> Vec<RawPoint> {
    let base = points(hour, 1, 1, 3600, 1_000_000, 0.0).remove(0);
    let mut v = 0.0;
    let mut out = Vec::new();
    let mut s = 0;
    while s < 3600 {
        v = if s == 94 {
            3.0
        } else {
            v + (s % 7) as f64 + 0.25
        };
        if !skip.contains(&s) {
            let time = (hour.start_unix_secs + s) * 1_000_000_000;
            out.push(RawPoint {
                node: node.into(),
                metric: "requests_total".into(),
                time,
                value: v,
                received_at: time + 1_000_000,
                metric_type: MetricType::Counter,
                ..base.clone()
            });
        }
        s += if s % 120 < 60 { 13 } else { 29 };
    }
    out
}

/// The counter's samples the first objects left out, to be sent late:
/// inside minutes' spans (gaps filled) and beside them.
const SKIPPED: [i64; 6] = [13, 26, 94, 618, 3546, 3575];

async fn initial_with_counter(ts: &TestStore, raw: &str) -> Expected {
    let mut want = initial(ts).await;
    for h in hours() {
        let c = counter(h, "node-000", &SKIPPED);
        put_raw(
            &ts.store,
            raw,
            "relay-a",
            900 + h.start_unix_secs as u64 % 1000,
            &c,
        )
        .await;
        want.add(&c, "relay-a");
    }
    want
}

fn only_kinds(r: &horizon_compactor::Report) -> Vec<FoldKind> {
    compacted_stats(r).iter().map(|s| s.kind).collect()
}

fn days_built(r: &horizon_compactor::Report) -> usize {
    r.days
        .iter()
        .filter(|d| matches!(d, DayResult::Ok(DayOutcome::Built { .. })))
        .count()
}

/// Late data for the middle hour, in three runs, each checked: the skipped
/// counter samples; copies of points received earlier with other values
/// and new series (main.rs's `late`); then a major compaction.
async fn late_steps(ts: &TestStore, want: &mut Expected, extra: &[&str]) {
    let h = hours()[1];
    let c = ts.compactor(extra);
    let missing: Vec<RawPoint> = counter(h, "node-000", &[])
        .into_iter()
        .filter(|p| SKIPPED.contains(&((p.time / 1_000_000_000) - h.start_unix_secs)))
        .collect();
    assert_eq!(missing.len(), SKIPPED.len());
    put_raw(&ts.store, "raw", "relay-c", 70, &missing).await;
    want.add(&missing, "relay-c");
    let r = run(&c, &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    let kinds = only_kinds(&r);
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| *k == FoldKind::Late),
        "{r:#?}"
    );
    assert_eq!(
        days_built(&r),
        1,
        "the day's 1-hour files are made again: {r:#?}"
    );
    check_compacted(&ts.read(), want);
    check_rollups(ts);

    late(ts, want).await;
    let r = run(&c, &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    let s: Vec<Compacted> = compacted_stats(&r);
    // (With shards, a shard whose late rows outweigh its own may be
    // compacted whole instead.)
    assert!(
        s.iter()
            .any(|s| s.kind == FoldKind::Late && s.late_replaced > 0 && s.late_rows > 0),
        "{r:#?}"
    );
    check_compacted(&ts.read(), want);
    check_rollups(ts);

    // A major compaction: every late row counts as too many.
    let more = points(h, 1, 2, 600, 2_000, 50.0)
        .into_iter()
        .map(|mut p| {
            p.node = "node-major".into();
            p
        })
        .collect::<Vec<_>>();
    put_raw(&ts.store, "raw", "relay-d", 71, &more).await;
    want.add(&more, "relay-d");
    let mut major = extra.to_vec();
    major.extend(["--late-major-share", "0"]);
    let r = run(&ts.compactor(&major), &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    // (Shards without a row of the new object fold nothing, as late data.)
    assert!(only_kinds(&r).contains(&FoldKind::Full), "{r:#?}");
    check_compacted(&ts.read(), want);
    check_rollups(ts);
}

async fn rollups_stay_exact_through_late_data_winning_copies_and_a_major_compaction(
    backend: Backend,
) {
    let ts = TestStore::new(backend).await;
    let mut want = initial_with_counter(&ts, "raw").await;
    let r = run(&ts.compactor(&[]), &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert_eq!(days_built(&r), 1, "{r:#?}");
    let v = check_rollups(&ts);
    // Untyped series have an increase, flagged (the check holds each row's
    // flag to its type); typed ones are not flagged.
    let assumed = v["minute"]["assumed"].as_u64().unwrap();
    assert!(
        assumed > 0 && assumed < v["minute"]["expected"].as_u64().unwrap(),
        "{v}"
    );
    // The small target size splits an hour's minute rollups into several
    // files (series ranges), so late folds below route series to files.
    let minute_files = ts
        .keys(&format!("rollups/1m/{}", hours()[1].partition()))
        .await;
    assert!(minute_files.len() >= 2, "{minute_files:?}");
    assert_eq!(v["days"], 1, "{v}");
    // A run with nothing new leaves the day as it is.
    let r = run(&ts.compactor(&[]), &closed_now()).await;
    assert!(
        r.days
            .iter()
            .all(|d| matches!(d, DayResult::Ok(DayOutcome::UpToDate { .. }))),
        "{r:#?}"
    );
    late_steps(&ts, &mut want, &[]).await;
    // The glob reader of the 1-hour level reads one file per day.
    let day_files = ts.keys("rollups/1h/").await;
    assert_eq!(day_files.len(), 1, "{day_files:?}");
}

async fn rollups_stay_exact_with_four_shards(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut want = initial_with_counter(&ts, "raw").await;
    let r = run(&ts.compactor(&["--shards", "4"]), &closed_now()).await;
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert_eq!(compacted_stats(&r).len(), 12, "{r:#?}");
    check_rollups(&ts);
    late_steps(&ts, &mut want, &["--shards", "4"]).await;
}

/// Makes the store look as if its hours were compacted before rollups
/// existed: manifests without rollups, no rollup files.
async fn forget_rollups(ts: &TestStore) {
    let keys = Keys::new("raw", "compacted");
    for hour in hours() {
        let unit = Unit {
            hour,
            shard: 0,
            shards: 1,
        };
        let (m, _) = horizon_compactor::commit::load_manifests(&ts.store, &keys, unit)
            .await
            .unwrap();
        let mut m = m.unwrap();
        assert!(m.rollups.is_some());
        m.rollups = None;
        let key = keys.manifest(unit, m.generation);
        let body = serde_json::to_vec_pretty(&m).unwrap();
        ts.store.put(&key, PutPayload::from(body)).await.unwrap();
    }
    for k in ts.keys("rollups").await {
        ts.store.delete(&Path::from(k)).await.unwrap();
    }
}

async fn a_backfill_adds_rollups_to_hours_compacted_without_them(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let want = initial_with_counter(&ts, "raw").await;
    run(&ts.compactor(&[]), &closed_now()).await;
    forget_rollups(&ts).await;
    let c = ts.compactor(&[]);
    let before = ts.dataset().await;
    let r = c.rollup(&hours(), &()).await.unwrap();
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert_eq!(only_kinds(&r), [FoldKind::Rollups; 3], "{r:#?}");
    assert_eq!(days_built(&r), 1, "{r:#?}");
    check_rollups(&ts);
    check_compacted(&ts.read(), &want);
    // The compacted files are the same ones.
    let files = |ds: &[String]| -> Vec<String> {
        ds.iter()
            .filter(|k| k.ends_with(".parquet"))
            .cloned()
            .collect()
    };
    assert_eq!(files(&ts.dataset().await), files(&before));
    // Again: nothing to do, nothing written (but lease records).
    let rollup_keys = || async {
        let mut k = ts.keys("rollups").await;
        k.retain(|k| !k.contains("/_leases/"));
        k
    };
    let rollups = rollup_keys().await;
    let r = c.rollup(&hours(), &()).await.unwrap();
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert!(compacted_stats(&r).is_empty(), "{r:#?}");
    assert_eq!(rollup_keys().await, rollups);
    // An hour without rollups that gets late data is compacted whole,
    // which makes its rollups.
    forget_rollups(&ts).await;
    let p = points(hours()[1], 1, 1, 3600, 5_000, 1.0)
        .into_iter()
        .map(|mut p| {
            p.node = "node-late".into();
            p
        })
        .collect::<Vec<_>>();
    put_raw(&ts.store, "raw", "relay-z", 5, &p).await;
    let r = run(&c, &Selection::Hours(vec![hours()[1]])).await;
    assert_eq!(only_kinds(&r), [FoldKind::Full], "{r:#?}");
    // The day cannot be made while its other hours have no rollups.
    assert!(
        r.days
            .iter()
            .any(|d| matches!(d, DayResult::Ok(DayOutcome::Skipped { reason, .. }) if reason.contains("telemetry-compactor rollup"))),
        "{r:#?}"
    );
    let r = c.rollup(&hours(), &()).await.unwrap();
    assert_eq!(only_kinds(&r), [FoldKind::Rollups; 2], "{r:#?}");
    check_rollups(&ts);
}
