//! A unit's rollups after a late fold, without the hour again
//! (docs/compaction.md, "Rollups").
//!
//! Only series with a changed sample are touched: a late row of a new key,
//! or a late copy that wins against a committed one of another value. For
//! each, its minute rows of the current generation are read from the
//! minute file that holds the series (files split the unit's series into
//! ranges), and its hour is folded again from those rows and the changed
//! samples in time order:
//!
//! - a minute none of whose span (first to last sample) a changed sample
//!   falls inside stays a summary: its count, sum, min, max, first and last
//!   merge with the late samples of the minute, and its increase is its own
//!   plus the step from whatever now precedes it;
//! - a minute a changed sample falls inside (a gap filled, or a value
//!   replaced) is recomputed from its committed samples, fetched by ranged
//!   reads of the row groups that can hold them (`fetch.rs`).
//!
//! Then only the minute files holding touched series are rewritten, and the
//! unit's hour file. The result equals the rollups of the new generation's
//! rows computed from scratch (count, min, max, first, last exactly; sum and
//! increase up to the rounding of the order of addition).

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use arrow_array::{RecordBatch, UInt32Array};
use object_store::path::Path;

use super::agg::Sample;
use super::build::{RollupFile, RollupFiles, SampleReader};
use super::fetch::{Found, Wanted, fetch};
use super::kind::MetricType;
use super::rows::{Row, RowReader, SeriesKey, rollup_schema};
use super::series::{SeriesAcc, minute_of};
use super::{NewRollupFiles, NewRollups};
use crate::commit::{FileEntry, FirstKey, Manifest};
use crate::ctx::{Ctx, blocking};
use crate::error::UnitError;
use crate::merge::{self, MergeError};
use crate::transfer::download;

/// A series with changed samples.
#[derive(Debug)]
struct Touched {
    key: Arc<SeriesKey>,
    /// Samples of new keys.
    fresh: Vec<(Sample, MetricType)>,
    /// Samples replacing a committed one (same time, another value).
    replacing: Vec<(Sample, MetricType)>,
    /// Its minute rows in the current generation.
    old: Vec<Row>,
}

/// What refolding read.
#[derive(Debug, Default)]
pub struct Refolded {
    /// The new generation's rollups.
    pub rollups: NewRollups,
    /// Bytes read from the store (rollup files, fetched samples).
    pub bytes_read: u64,
    /// Series touched.
    pub series: usize,
    /// Minutes recomputed from fetched samples.
    pub minutes_fetched: usize,
}

/// The unit's rollups after late rows `fresh` (new keys) and `replacing`
/// (winning copies of another value) of the sorted `late` batch.
pub(crate) async fn refold(
    ctx: &Ctx<'_>,
    hour_start: i64,
    current: &Manifest,
    late: &RecordBatch,
    fresh: &[u32],
    replacing: &[u32],
    work: &FsPath,
) -> Result<Refolded, UnitError> {
    let Some(rollups) = current.rollups.as_ref() else {
        return Err(UnitError::Missing(
            "the current generation's rollups".into(),
        ));
    };
    if fresh.is_empty() && replacing.is_empty() {
        return Ok(Refolded {
            rollups: NewRollups::kept(rollups),
            ..Refolded::default()
        });
    }
    let mut touched = touched_series(late, fresh, replacing)?;
    let dir = work.join("rollup-late");
    std::fs::create_dir_all(&dir).map_err(|source| UnitError::Local {
        path: dir.clone(),
        source,
    })?;
    let mut out = Refolded {
        series: touched.len(),
        ..Refolded::default()
    };
    // The minute files holding touched series, downloaded.
    let route = |entries: &[FileEntry], t: &Touched| -> usize {
        entries
            .partition_point(|e| {
                e.first
                    .as_ref()
                    .is_none_or(|f| f.as_key() <= t.key.sort_key())
            })
            .saturating_sub(1)
    };
    let minute_of_file: Vec<usize> = touched.iter().map(|t| route(&rollups.minute, t)).collect();
    let mut local: HashMap<usize, PathBuf> = HashMap::new();
    for &i in &minute_of_file {
        if let (Some(f), false) = (rollups.minute.get(i), local.contains_key(&i)) {
            let path = dir.join(format!("old-1m-{i:04}.parquet"));
            download(ctx.store, &Path::from(f.key.as_str()), &path).await?;
            out.bytes_read += f.bytes;
            local.insert(i, path);
        }
    }
    // Their minute rows of the current generation.
    let paths: Vec<PathBuf> = local.values().cloned().collect();
    touched = blocking(move || -> Result<Vec<Touched>, MergeError> {
        for p in &paths {
            read_old(p, &mut touched)?;
        }
        Ok(touched)
    })
    .await??;
    // The minutes to recompute, and their committed samples.
    let wanted = wanted(&touched);
    out.minutes_fetched = wanted.len();
    let (found, fetched) = fetch(ctx.store, &current.files, &wanted).await?;
    out.bytes_read += fetched;
    // The touched series folded again; then the files holding them rewritten.
    let hour_paths: Vec<(usize, PathBuf)> = {
        let mut v = Vec::new();
        for (i, f) in rollups.hour.iter().enumerate() {
            let path = dir.join(format!("old-1h-{i:04}.parquet"));
            download(ctx.store, &Path::from(f.key.as_str()), &path).await?;
            out.bytes_read += f.bytes;
            v.push((i, path));
        }
        v
    };
    let rg = usize::try_from(ctx.settings.row_group_rows).unwrap_or(usize::MAX);
    let rollups = rollups.clone();
    out.rollups = blocking(move || -> Result<NewRollups, MergeError> {
        let folded: Vec<(Arc<SeriesKey>, Vec<Row>, Option<Row>)> = touched
            .into_iter()
            .map(|t| refold_series(t, &found, hour_start))
            .collect();
        let mut minute: NewRollupFiles = Vec::new();
        let files = rollups.minute.len().max(1);
        for i in 0..files {
            let repl: Vec<(&Arc<SeriesKey>, &[Row])> = folded
                .iter()
                .zip(&minute_of_file)
                .filter(|(_, f)| **f == i)
                .map(|((k, m, _), _)| (k, m.as_slice()))
                .collect();
            match (repl.is_empty(), rollups.minute.get(i)) {
                (true, Some(e)) => minute.push(Ok(e.clone())),
                (_, e) => {
                    let src = e.and(local.get(&i).map(PathBuf::as_path));
                    let stem = format!("late-1m-{i:04}");
                    minute.extend(
                        rewrite(src, &repl, &dir, &stem, "1m", rg)?
                            .into_iter()
                            .map(Err),
                    );
                }
            }
        }
        let hours: Vec<(&Arc<SeriesKey>, &[Row])> = folded
            .iter()
            .filter_map(|(k, _, h)| h.as_ref().map(|h| (k, std::slice::from_ref(h))))
            .collect();
        let route_h = |k: &SeriesKey| {
            rollups
                .hour
                .partition_point(|e| e.first.as_ref().is_none_or(|f| f.as_key() <= k.sort_key()))
                .saturating_sub(1)
        };
        let mut hour: NewRollupFiles = Vec::new();
        for i in 0..rollups.hour.len().max(1) {
            let repl: Vec<(&Arc<SeriesKey>, &[Row])> = hours
                .iter()
                .filter(|(k, _)| route_h(k) == i)
                .cloned()
                .collect();
            match (repl.is_empty(), rollups.hour.get(i)) {
                (true, Some(e)) => hour.push(Ok(e.clone())),
                _ => {
                    let src = hour_paths
                        .iter()
                        .find(|(j, _)| *j == i)
                        .map(|(_, p)| p.as_path());
                    let stem = format!("late-1h-{i:04}");
                    hour.extend(
                        rewrite(src, &repl, &dir, &stem, "1h", rg)?
                            .into_iter()
                            .map(Err),
                    );
                }
            }
        }
        Ok(NewRollups { minute, hour })
    })
    .await??;
    Ok(out)
}

/// The changed late rows grouped by series (the batch is in key order).
fn touched_series(
    late: &RecordBatch,
    fresh: &[u32],
    replacing: &[u32],
) -> Result<Vec<Touched>, UnitError> {
    let mut rows: Vec<(u32, bool)> = fresh.iter().map(|&r| (r, false)).collect();
    rows.extend(replacing.iter().map(|&r| (r, true)));
    rows.sort_unstable();
    let picked = arrow_select::take::take_record_batch(
        late,
        &UInt32Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>()),
    )
    .map_err(MergeError::from)?;
    let mut out: Vec<Touched> = Vec::new();
    let acc = SampleReader::new(&picked).map_err(MergeError::from)?;
    for (i, &(_, is_replacing)) in rows.iter().enumerate() {
        let (key, sample, ty) = acc.row(i);
        let same = out.last().is_some_and(|t| t.key.sort_key() == key);
        if !same {
            out.push(Touched {
                key: Arc::new(acc.series(i)),
                fresh: Vec::new(),
                replacing: Vec::new(),
                old: Vec::new(),
            });
        }
        if let Some(t) = out.last_mut() {
            if is_replacing {
                t.replacing.push((sample, ty));
            } else {
                t.fresh.push((sample, ty));
            }
        }
    }
    Ok(out)
}

/// Collects the touched series' minute rows from a local minute file.
fn read_old(path: &FsPath, touched: &mut [Touched]) -> Result<(), MergeError> {
    let mut by_id: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, t) in touched.iter().enumerate() {
        by_id.entry(t.key.series_id).or_default().push(i);
    }
    for batch in merge::open_source(path)? {
        let batch = batch?;
        let rd = RowReader::new(&batch);
        for r in 0..batch.num_rows() {
            let k = rd.sort_key(r);
            let Some(ids) = by_id.get(&k.2) else { continue };
            if let Some(&t) = ids.iter().find(|&&t| touched[t].key.sort_key() == k) {
                let key = Arc::clone(&touched[t].key);
                touched[t].old.push(rd.row(r, &key));
            }
        }
    }
    Ok(())
}

/// Whether a changed sample falls inside an old minute's span.
fn inside(t: &Touched, r: &Row) -> bool {
    let (lo, hi) = (r.agg.first.0, r.agg.last.0);
    t.fresh.iter().any(|((ts, _), _)| lo < *ts && *ts < hi)
        || t.replacing
            .iter()
            .any(|((ts, _), _)| lo <= *ts && *ts <= hi)
}

fn wanted_of(t: &Touched, r: &Row) -> Wanted {
    Wanted {
        metric: t.key.metric.clone(),
        node: t.key.node.clone(),
        series_id: t.key.series_id,
        minute: r.start,
    }
}

/// The series-minutes recomputed from their committed samples.
fn wanted(touched: &[Touched]) -> Vec<Wanted> {
    let mut v: Vec<Wanted> = touched
        .iter()
        .flat_map(|t| {
            t.old
                .iter()
                .filter(|r| inside(t, r))
                .map(|r| wanted_of(t, r))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

enum Item<'a> {
    Sample(Sample, MetricType),
    Summary(&'a Row, Option<Sample>),
}

impl Item<'_> {
    fn time(&self) -> i64 {
        match self {
            Item::Sample(s, _) => s.0,
            Item::Summary(r, _) => r.agg.first.0,
        }
    }
}

/// One touched series' hour folded again: its minute rows and hour row.
fn refold_series(
    t: Touched,
    found: &Found,
    hour_start: i64,
) -> (Arc<SeriesKey>, Vec<Row>, Option<Row>) {
    let replacing: HashMap<i64, (f64, MetricType)> = t
        .replacing
        .iter()
        .map(|((ts, v), ty)| (*ts, (*v, *ty)))
        .collect();
    let mut items: Vec<Item> = Vec::new();
    let mut old_prev = None;
    for r in &t.old {
        if inside(&t, r) {
            let samples = found.get(&wanted_of(&t, r)).map_or(&[][..], Vec::as_slice);
            for &(ts, v, ty) in samples {
                let (v, ty) = replacing.get(&ts).copied().unwrap_or((v, ty));
                items.push(Item::Sample((ts, v), ty));
            }
        } else {
            items.push(Item::Summary(r, old_prev));
        }
        old_prev = Some(r.agg.last);
    }
    let minutes_with_rows: std::collections::HashSet<i64> = t.old.iter().map(|r| r.start).collect();
    for &(s, ty) in &t.fresh {
        items.push(Item::Sample(s, ty));
    }
    // A replacing sample in a minute with no old row cannot be (it
    // replaces a committed sample); keep it as a sample if it comes.
    for &(s, ty) in &t.replacing {
        if !minutes_with_rows.contains(&minute_of(s.0)) {
            items.push(Item::Sample(s, ty));
        }
    }
    items.sort_by_key(Item::time);
    let mut acc = SeriesAcc::new(Arc::clone(&t.key));
    for it in &items {
        match it {
            Item::Sample(s, ty) => acc.sample(*s, *ty),
            Item::Summary(r, p) => acc.summary(r, *p),
        }
    }
    let (minutes, hour) = acc.finish(hour_start);
    (t.key, minutes, hour)
}

/// Writes `src` (a local rollup file, or none) with the rows of the
/// `repl` series (in key order) in place of theirs.
fn rewrite(
    src: Option<&FsPath>,
    repl: &[(&Arc<SeriesKey>, &[Row])],
    dir: &FsPath,
    stem: &str,
    level: &'static str,
    row_group_rows: usize,
) -> Result<Vec<RollupFile>, MergeError> {
    let mut out = RollupFiles::new(dir, stem, level, row_group_rows, u64::MAX);
    let mut j = 0;
    let emit = |out: &mut RollupFiles, rows: &[Row]| out.write_rows(rows);
    if let Some(src) = src {
        for batch in merge::open_source(src)? {
            let batch = RecordBatch::try_new(rollup_schema(), batch?.columns().to_vec())?;
            let rd = RowReader::new(&batch);
            let mut run = 0;
            let flush = |out: &mut RollupFiles, from: usize, to: usize| {
                if to > from {
                    let (m, n, s) = rd.sort_key(from);
                    let first = FirstKey {
                        metric: m.to_owned(),
                        node: n.to_owned(),
                        series_id: s,
                    };
                    out.write(&batch.slice(from, to - from), first)
                } else {
                    Ok(())
                }
            };
            for i in 0..batch.num_rows() {
                let k = rd.sort_key(i);
                while j < repl.len() && repl[j].0.sort_key() < k {
                    flush(&mut out, run, i)?;
                    run = i;
                    emit(&mut out, repl[j].1)?;
                    j += 1;
                }
                if j < repl.len() && repl[j].0.sort_key() == k {
                    flush(&mut out, run, i)?;
                    run = i + 1;
                }
            }
            flush(&mut out, run, batch.num_rows())?;
        }
    }
    for (_, rows) in &repl[j..] {
        emit(&mut out, rows)?;
    }
    out.finish()
}
