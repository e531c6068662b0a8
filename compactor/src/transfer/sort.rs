//! Sorting: the new raw objects fetched, decoded and sorted in chunks of
//! bounded memory, each spilled as a sorted, deduplicated run
//! ([`sort_raw`]; unreadable objects are moved aside), and sorted local
//! files merged into output files of the target size ([`merge_files`]).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use tracing::warn;

use super::fetch::fetch_raw;
use crate::ctx::{Ctx, blocking};
use crate::error::{DecodeError, UnitError};
use crate::merge::{self, Counts, LocalFile, MergeError, Orderer, OutputFiles, Source};
use crate::settings::Settings;
use crate::store::{delete, store_err};
use crate::unit::Unit;

/// The new raw objects, sorted into runs.
#[derive(Debug, Default)]
pub(crate) struct SortedRaw {
    /// Sorted, deduplicated run files.
    pub runs: Vec<PathBuf>,
    /// Rows read (this shard's).
    pub rows: u64,
    /// Keys of unreadable objects, moved to the quarantine prefix.
    pub quarantined: Vec<String>,
    /// Keys of the objects whose rows are in the runs.
    pub folded: Vec<String>,
    /// Their size.
    pub folded_bytes: u64,
    /// Bytes fetched from the raw objects (footers, offset indexes and
    /// this shard's pages, with the gaps `--read-gap` joins; or whole
    /// objects).
    pub bytes_read: u64,
    /// Rows dropped as copies of another row of the same chunk.
    pub duplicates: u64,
    /// Of those, copies dropped against a copy of another value.
    pub value_conflicts: u64,
}

/// Fetches the new raw objects, sorts them in chunks of bounded memory and
/// spills each chunk as a sorted run. Memory: a chunk's decoded rows plus
/// the sort's index of them stay within `Settings::sort_chunk_bytes`, and
/// decoded objects fetched ahead within `Settings::read_ahead_bytes` (the
/// objects fetched at once are as many as fit by the largest decoded so
/// far, from one up to `--read-concurrency`).
pub(crate) async fn sort_raw(
    ctx: &Ctx<'_>,
    unit: Unit,
    new: &[ObjectMeta],
    dir: &FsPath,
) -> Result<SortedRaw, UnitError> {
    let chunk_limit = ctx.settings.sort_chunk_bytes();
    let ahead_limit = ctx.settings.read_ahead_bytes();
    let store = Arc::clone(ctx.store);
    let gap = ctx.settings.read_gap;
    let fetch = |meta: ObjectMeta| {
        let store = Arc::clone(&store);
        async move {
            let f = fetch_raw(&store, &meta, unit, gap).await?;
            Ok::<_, UnitError>((meta, f))
        }
    };
    let mut queue = new.iter().cloned();
    let mut fetched = FuturesOrdered::new();
    // Decoded bytes of the largest object so far (0: none yet, fetch one).
    let mut largest = 0usize;

    let mut out = SortedRaw::default();
    let mut chunk: Vec<RecordBatch> = Vec::new();
    let mut chunk_bytes = 0usize;
    loop {
        let at_once = match largest {
            0 => 1,
            l => (ahead_limit / l).clamp(1, ctx.settings.read_concurrency as usize),
        };
        while fetched.len() < at_once {
            match queue.next() {
                Some(meta) => fetched.push_back(fetch(meta)),
                None => break,
            }
        }
        let Some(item) = fetched.next().await else {
            break;
        };
        let (meta, fetched) = item?;
        let key = meta.location;
        out.bytes_read += fetched.bytes_read;
        match fetched.rows {
            Ok(batches) => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                let bytes = batches.iter().map(merge::batch_bytes).sum::<usize>()
                    + rows * merge::SORT_BYTES_PER_ROW;
                largest = largest.max(bytes).max(1);
                if chunk_bytes + bytes > chunk_limit && !chunk.is_empty() {
                    spill(std::mem::take(&mut chunk), dir, &mut out).await?;
                    chunk_bytes = 0;
                }
                out.rows += rows as u64;
                chunk_bytes += bytes;
                chunk.extend(batches);
                out.folded.push(key.to_string());
                out.folded_bytes += meta.size;
            }
            Err(reason) => {
                quarantine(ctx, &key, &reason).await?;
                out.quarantined.push(key.to_string());
            }
        }
    }
    if !chunk.is_empty() {
        spill(chunk, dir, &mut out).await?;
    }
    Ok(out)
}

/// Moves an unreadable raw object to the quarantine prefix (copy, then delete).
async fn quarantine(ctx: &Ctx<'_>, key: &Path, reason: &DecodeError) -> Result<(), UnitError> {
    let to = ctx.keys.quarantine(key);
    warn!(object = %key, quarantine = %to, %reason, "raw object is unreadable; moving it aside");
    ctx.store
        .copy(key, &to)
        .await
        .map_err(store_err("copy", key))?;
    delete(ctx.store, key).await?;
    Ok(())
}

/// Sorts and deduplicates a chunk and writes it as a local run file (its
/// path and counts added to `sorted`).
async fn spill(
    chunk: Vec<RecordBatch>,
    dir: &FsPath,
    sorted: &mut SortedRaw,
) -> Result<(), UnitError> {
    let dir = dir.to_owned();
    let n = sorted.runs.len();
    let (files, counts) = blocking(move || -> Result<(Vec<LocalFile>, Counts), MergeError> {
        let orderer = Orderer::new()?;
        let mut out = OutputFiles::new(
            &dir,
            &format!("run-{n:04}"),
            merge::spill_properties(),
            u64::MAX,
        );
        let counts = merge::sort_dedup(&orderer, &chunk, |b| out.write(&b))?;
        Ok((out.finish()?, counts))
    })
    .await??;
    sorted.runs.extend(files.into_iter().map(|f| f.path));
    sorted.duplicates += counts.duplicates();
    sorted.value_conflicts += counts.value_conflicts;
    Ok(())
}

/// What else sees the merged rows, in key order, as they are written (the
/// rollups of a full fold).
pub(crate) trait Tap: Send + 'static {
    /// The next batch of merged rows.
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), MergeError>;
}

impl Tap for () {
    fn batch(&mut self, _: &RecordBatch) -> Result<(), MergeError> {
        Ok(())
    }
}

impl Tap for crate::rollup::Builder {
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), MergeError> {
        self.push(batch)
    }
}

/// Merges the sorted sources into output files of the target size (on a
/// blocking thread), showing every merged batch to `tap`.
pub(crate) async fn merge_files<T: Tap>(
    settings: &Settings,
    sources: Vec<PathBuf>,
    out_dir: PathBuf,
    mut tap: T,
) -> Result<(Vec<LocalFile>, Counts, T), UnitError> {
    let props =
        merge::output_properties(usize::try_from(settings.row_group_rows).unwrap_or(usize::MAX));
    let target = settings.target_file_size;
    let merged = blocking(move || -> Result<(Vec<LocalFile>, Counts, T), MergeError> {
        let orderer = Orderer::new()?;
        let srcs = sources
            .iter()
            .map(|p| merge::open_source(p))
            .collect::<Result<Vec<Source>, _>>()?;
        let mut out = OutputFiles::new(&out_dir, "part", props, target);
        let counts = merge::merge(&orderer, srcs, |b| {
            tap.batch(&b)?;
            out.write(&b)
        })?;
        Ok((out.finish()?, counts, tap))
    })
    .await??;
    Ok(merged)
}
