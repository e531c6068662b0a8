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
use super::build::SampleReader;
use super::fetch::{Found, Wanted, fetch};
use super::files::RollupFiles;
use super::rows::{Row, SeriesKey};
use super::series::{SeriesAcc, minute_of};
use super::walk::{Visitor, walk};
use super::{NewRollupFiles, NewRollups};
use crate::commit::{FileEntry, Manifest};
use crate::ctx::{Ctx, blocking};
use crate::error::UnitError;
use crate::merge::MergeError;
use crate::transfer::download;
use horizon_shared::proto::MetricType;

/// A series with changed samples.
#[derive(Debug)]
struct Touched {
    key: Arc<SeriesKey>,
    /// Samples of new keys.
    fresh: Vec<(Sample, MetricType)>,
    /// Samples replacing a committed one (same time, another value).
    replacing: Vec<(Sample, MetricType)>,
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
    let touched = touched_series(late, fresh, replacing)?;
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
    let route = |entries: &[FileEntry], k: &SeriesKey| -> usize {
        entries
            .partition_point(|e| e.first.as_ref().is_none_or(|f| f.as_key() <= k.sort_key()))
            .saturating_sub(1)
    };
    let files = rollups.minute.len().max(1);
    let mut by_file: Vec<Vec<usize>> = vec![Vec::new(); files];
    for (i, t) in touched.iter().enumerate() {
        by_file[route(&rollups.minute, &t.key)].push(i);
    }
    let mut local: Vec<Option<PathBuf>> = vec![None; files];
    for (i, f) in rollups.minute.iter().enumerate() {
        if !by_file[i].is_empty() {
            let path = dir.join(format!("old-1m-{i:04}.parquet"));
            download(ctx.store, &Path::from(f.key.as_str()), &path).await?;
            out.bytes_read += f.bytes;
            local[i] = Some(path);
        }
    }
    let mut hour_local: Vec<PathBuf> = Vec::new();
    for (i, f) in rollups.hour.iter().enumerate() {
        let path = dir.join(format!("old-1h-{i:04}.parquet"));
        download(ctx.store, &Path::from(f.key.as_str()), &path).await?;
        out.bytes_read += f.bytes;
        hour_local.push(path);
    }
    let touched = Arc::new(touched);
    let (by_file, local) = (Arc::new(by_file), Arc::new(local));
    // Pass 1: the minutes a changed sample falls inside, to recompute.
    let wanted = {
        let (touched, by_file, local) = (touched.clone(), by_file.clone(), local.clone());
        blocking(move || -> Result<Vec<Wanted>, MergeError> {
            let mut w = Scan {
                touched: &touched,
                wanted: Vec::new(),
                ids: &[],
            };
            for (i, ids) in by_file.iter().enumerate() {
                let keys: Vec<Arc<SeriesKey>> =
                    ids.iter().map(|&t| Arc::clone(&touched[t].key)).collect();
                w.ids = ids;
                walk(local[i].as_deref(), &keys, &mut w)?;
            }
            w.wanted.sort();
            w.wanted.dedup();
            Ok(w.wanted)
        })
        .await??
    };
    out.minutes_fetched = wanted.len();
    // Their committed samples.
    let (found, fetched) = fetch(ctx.store, &current.files, &wanted).await?;
    out.bytes_read += fetched;
    // Pass 2: each file written again, each touched series folded anew as
    // its rows go by; then the hour files with the series' new hour rows.
    let rg = usize::try_from(ctx.settings.row_group_rows).unwrap_or(usize::MAX);
    let rollups = rollups.clone();
    out.rollups = blocking(move || -> Result<NewRollups, MergeError> {
        let mut hours: Vec<Option<Row>> = vec![None; touched.len()];
        let mut minute: NewRollupFiles = Vec::new();
        for (i, ids) in by_file.iter().enumerate() {
            match (ids.is_empty(), rollups.minute.get(i)) {
                (true, Some(e)) => minute.push(Ok(e.clone())),
                _ => {
                    let keys: Vec<Arc<SeriesKey>> =
                        ids.iter().map(|&t| Arc::clone(&touched[t].key)).collect();
                    let mut w = Refold {
                        touched: &touched,
                        ids,
                        found: &found,
                        hour_start,
                        hours: &mut hours,
                        out: RollupFiles::new(&dir, &format!("late-1m-{i:04}"), "1m", rg, u64::MAX),
                    };
                    walk(local[i].as_deref(), &keys, &mut w)?;
                    minute.extend(w.out.finish()?.into_iter().map(Err));
                }
            }
        }
        // The hour files: every touched series' new hour row in place of its old one.
        let mut hour: NewRollupFiles = Vec::new();
        let hour_files = rollups.hour.len().max(1);
        let mut by_hour_file: Vec<Vec<usize>> = vec![Vec::new(); hour_files];
        for (t, h) in hours.iter().enumerate() {
            if h.is_some() {
                by_hour_file[route(&rollups.hour, &touched[t].key)].push(t);
            }
        }
        for (i, ids) in by_hour_file.iter().enumerate() {
            match (ids.is_empty(), rollups.hour.get(i)) {
                (true, Some(e)) => hour.push(Ok(e.clone())),
                _ => {
                    let keys: Vec<Arc<SeriesKey>> =
                        ids.iter().map(|&t| Arc::clone(&touched[t].key)).collect();
                    let mut w = Replace {
                        rows: ids.iter().map(|&t| hours[t].clone()).collect(),
                        out: RollupFiles::new(&dir, &format!("late-1h-{i:04}"), "1h", rg, u64::MAX),
                    };
                    walk(hour_local.get(i).map(PathBuf::as_path), &keys, &mut w)?;
                    hour.extend(w.out.finish()?.into_iter().map(Err));
                }
            }
        }
        Ok(NewRollups { minute, hour })
    })
    .await??;
    Ok(out)
}

/// Pass 1: the minutes of touched series a changed sample falls inside.
struct Scan<'a> {
    touched: &'a [Touched],
    ids: &'a [usize],
    wanted: Vec<Wanted>,
}

impl Visitor for Scan<'_> {
    fn kept(&mut self, _: &RecordBatch, _: usize, _: usize) -> Result<(), MergeError> {
        Ok(())
    }

    fn series(&mut self, i: usize, rows: &[Row]) -> Result<(), MergeError> {
        let t = &self.touched[self.ids[i]];
        self.wanted.extend(
            rows.iter()
                .filter(|r| inside(t, r))
                .map(|r| wanted_of(t, r)),
        );
        Ok(())
    }
}

/// Pass 2: the file written again, touched series folded anew.
struct Refold<'a> {
    touched: &'a [Touched],
    ids: &'a [usize],
    found: &'a Found,
    hour_start: i64,
    hours: &'a mut Vec<Option<Row>>,
    out: RollupFiles,
}

impl Visitor for Refold<'_> {
    fn kept(&mut self, batch: &RecordBatch, from: usize, to: usize) -> Result<(), MergeError> {
        self.out.write(&batch.slice(from, to - from))
    }

    fn series(&mut self, i: usize, rows: &[Row]) -> Result<(), MergeError> {
        let t = self.ids[i];
        let (minutes, hour) = refold_series(&self.touched[t], rows, self.found, self.hour_start);
        self.hours[t] = hour;
        self.out.write_rows(&minutes)
    }
}

/// The hour files: each touched series' new hour row in place of its old.
struct Replace {
    rows: Vec<Option<Row>>,
    out: RollupFiles,
}

impl Visitor for Replace {
    fn kept(&mut self, batch: &RecordBatch, from: usize, to: usize) -> Result<(), MergeError> {
        self.out.write(&batch.slice(from, to - from))
    }

    fn series(&mut self, i: usize, _: &[Row]) -> Result<(), MergeError> {
        self.out.write_rows(self.rows[i].as_slice())
    }
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

/// One touched series' hour folded again from its minute rows `old` of the
/// current generation: its new minute rows and hour row.
fn refold_series(
    t: &Touched,
    old: &[Row],
    found: &Found,
    hour_start: i64,
) -> (Vec<Row>, Option<Row>) {
    let replacing: HashMap<i64, (f64, MetricType)> = t
        .replacing
        .iter()
        .map(|((ts, v), ty)| (*ts, (*v, *ty)))
        .collect();
    let mut items: Vec<Item> = Vec::new();
    let mut old_prev = None;
    for r in old {
        if inside(t, r) {
            let samples = found.get(&wanted_of(t, r)).map_or(&[][..], Vec::as_slice);
            for &(ts, v, ty) in samples {
                let (v, ty) = replacing.get(&ts).copied().unwrap_or((v, ty));
                items.push(Item::Sample((ts, v), ty));
            }
        } else {
            items.push(Item::Summary(r, old_prev));
        }
        old_prev = Some(r.agg.last);
    }
    let minutes_with_rows: std::collections::HashSet<i64> = old.iter().map(|r| r.start).collect();
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
    acc.finish(hour_start)
}
