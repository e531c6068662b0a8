//! Folding late data into a compacted unit without rewriting it
//! (docs/compaction.md, "Late data").
//!
//! The new raw rows are sorted and deduplicated among themselves, then every
//! committed file of the unit is probed for their keys (`probe.rs`: footer,
//! row-group statistics, key and tie-break columns of the candidate row
//! groups). Each late row then either
//!
//! - duplicates a committed row that the rule keeps: dropped;
//! - duplicates a committed row and wins: the committed file holding it is
//!   rewritten with the late copy in place of its own (that file only);
//! - holds a key no committed file holds: written to the generation's new
//!   late file.
//!
//! So the generation's files still hold each key once, every copy decided
//! by the rule, and a major compaction of them equals a compaction of all
//! the unit's raw objects from scratch.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use arrow_array::{RecordBatch, UInt32Array};
use object_store::path::Path;
use tracing::info;

use super::probe::{LateKeys, probe};
use crate::commit::{FileEntry, Manifest};
use crate::ctx::{Ctx, blocking};
use crate::error::UnitError;
use crate::merge::{self, Counts, LocalFile, MergeError, Orderer, OutputFiles, Source};
use crate::rollup::NewRollups;
use crate::rollup::late::refold;
use crate::transfer::{download, merge_files};

/// A late fold's files, local and ready to stage.
#[derive(Debug, Default)]
pub(crate) struct LateFold {
    /// The generation's files in order: `Ok` an unchanged committed entry,
    /// `Err` a new local file (and whether it is a late file).
    pub files: Vec<Result<FileEntry, (LocalFile, bool)>>,
    /// Late rows written to the new late file.
    pub late_rows: u64,
    /// Late rows dropped: the committed copy wins.
    pub dropped: u64,
    /// Late rows that replaced a committed copy.
    pub replaced: u64,
    /// Rows dropped as copies: late rows of one key beyond the first, late
    /// copies the committed copy beats, and committed copies replaced.
    pub duplicates: u64,
    /// Of those, copies dropped against a copy of another value.
    pub value_conflicts: u64,
    /// Committed files rewritten.
    pub rewritten: usize,
    /// Bytes read from the store (probes, rewritten files, rollups).
    pub bytes_read: u64,
    /// The generation's rollups (only the files of touched series new).
    pub rollups: NewRollups,
}

/// Folds the sorted runs of new raw rows into the unit's current files.
pub(crate) async fn fold(
    ctx: &Ctx<'_>,
    hour_start_ns: i64,
    current: &Manifest,
    runs: Vec<PathBuf>,
    work: &FsPath,
) -> Result<LateFold, UnitError> {
    let (late, counts) = blocking(move || merge_in_memory(runs)).await??;
    let mut out = LateFold {
        duplicates: counts.duplicates(),
        value_conflicts: counts.value_conflicts,
        ..LateFold::default()
    };
    let index = {
        let late = late.clone();
        Arc::new(
            blocking(move || LateKeys::new(&late))
                .await?
                .map_err(MergeError::from)?,
        )
    };
    // Which committed file holds a copy of which late row, and who wins.
    let mut winners: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    let mut taken = vec![false; late.num_rows()];
    // Late rows that win against a committed copy of another value.
    let mut replacing: Vec<u32> = Vec::new();
    let mut groups_read = 0;
    for (i, f) in current.files.iter().enumerate() {
        if late.num_rows() == 0 {
            break;
        }
        let p = probe(ctx.store, &Path::from(f.key.as_str()), f.bytes, &index).await?;
        out.bytes_read += p.bytes_read;
        groups_read += p.row_groups_read;
        for h in p.hits {
            taken[h.late] = true;
            out.duplicates += 1;
            out.value_conflicts += u64::from(h.conflict);
            if h.wins {
                winners.entry(i).or_default().push(h.late as u32);
                if h.conflict {
                    replacing.push(h.late as u32);
                }
                out.replaced += 1;
            } else {
                out.dropped += 1;
            }
        }
    }

    let props = || {
        merge::output_properties(usize::try_from(ctx.settings.row_group_rows).unwrap_or(usize::MAX))
    };
    let target = ctx.settings.target_file_size;
    for (i, f) in current.files.iter().enumerate() {
        let Some(rows) = winners.remove(&i) else {
            out.files.push(Ok(f.clone()));
            continue;
        };
        // Rewrite this file with the winning late copies (the merge keeps
        // them by the rule, the same one that picked them).
        let dir = work.join(format!("rewrite-{i:04}"));
        mkdir(&dir)?;
        let local = dir.join("committed.parquet");
        download(ctx.store, &Path::from(f.key.as_str()), &local).await?;
        out.bytes_read += f.bytes;
        let batch = late.clone();
        let copies_dir = dir.clone();
        let copies = blocking(move || -> Result<Vec<PathBuf>, MergeError> {
            let mut rows = rows;
            rows.sort_unstable();
            let picked = arrow_select::take::take_record_batch(&batch, &UInt32Array::from(rows))?;
            let mut w = OutputFiles::new(&copies_dir, "late", merge::spill_properties(), u64::MAX);
            w.write(&picked)?;
            Ok(w.finish()?.into_iter().map(|f| f.path).collect())
        })
        .await??;
        let out_dir = dir.join("out");
        mkdir(&out_dir)?;
        let mut sources = vec![local];
        sources.extend(copies);
        let (files, _, ()) = merge_files(ctx.settings, sources, out_dir, ()).await?;
        out.rewritten += 1;
        out.files
            .extend(files.into_iter().map(|lf| Err((lf, f.late))));
    }

    // The late file: late rows whose keys no committed file holds.
    let fresh: Vec<u32> = (0..late.num_rows() as u32)
        .filter(|&r| !taken[r as usize])
        .collect();
    out.late_rows = fresh.len() as u64;
    replacing.sort_unstable();
    let r = refold(ctx, hour_start_ns, current, &late, &fresh, &replacing, work).await?;
    out.rollups = r.rollups;
    out.bytes_read += r.bytes_read;
    if !fresh.is_empty() {
        let dir = work.join("late");
        mkdir(&dir)?;
        let props = props();
        let files = blocking(move || -> Result<Vec<LocalFile>, MergeError> {
            let picked = arrow_select::take::take_record_batch(&late, &UInt32Array::from(fresh))?;
            let mut w = OutputFiles::new(&dir, "late", props, target);
            for off in (0..picked.num_rows()).step_by(merge::BATCH_ROWS) {
                w.write(&picked.slice(off, merge::BATCH_ROWS.min(picked.num_rows() - off)))?;
            }
            w.finish()
        })
        .await??;
        out.files
            .extend(files.into_iter().map(|lf| Err((lf, true))));
    }
    info!(
        late_rows = out.late_rows,
        replaced = out.replaced,
        dropped = out.dropped,
        rewritten = out.rewritten,
        rollup_series = r.series,
        rollup_minutes_fetched = r.minutes_fetched,
        row_groups_read = groups_read,
        bytes_read = out.bytes_read,
        "late rows sorted into the unit's files"
    );
    Ok(out)
}

fn mkdir(dir: &FsPath) -> Result<(), UnitError> {
    std::fs::create_dir_all(dir).map_err(|source| UnitError::Local {
        path: dir.to_owned(),
        source,
    })
}

/// Merges sorted runs into one sorted, deduplicated batch.
fn merge_in_memory(runs: Vec<PathBuf>) -> Result<(RecordBatch, Counts), MergeError> {
    let orderer = Orderer::new()?;
    let sources = runs
        .iter()
        .map(|p| merge::open_source(p))
        .collect::<Result<Vec<Source>, _>>()?;
    let mut batches = Vec::new();
    let counts = merge::merge(&orderer, sources, |b| {
        batches.push(b);
        Ok(())
    })?;
    let batch = arrow_select::concat::concat_batches(&horizon_shared::raw::raw_schema(), &batches)?;
    Ok((batch, counts))
}
