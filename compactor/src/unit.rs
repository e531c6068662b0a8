//! Compacting one unit (an hour, or a shard of one): plan, merge, commit.
//!
//! The steps, in order (docs/compaction.md explains why each is safe to
//! crash after):
//!
//! 1. take the unit's lease;
//! 2. settle the current generation: copy any of its staged files not yet
//!    in the partition, delete partition files it does not list, staged
//!    files and older manifests; delete raw objects every shard has folded
//!    (retention `delete`);
//! 3. list the raw objects the current generation has not folded; none:
//!    done;
//! 4. merge them with the current generation's files (sort in bounded
//!    chunks, spill, k-way merge, deduplicate) into local files of the
//!    target size, and upload those to the staging folder;
//! 5. renew the lease (proof that no other run took the unit);
//! 6. commit: create the next generation's manifest (create-only);
//! 7. settle the new generation (step 2 again);
//! 8. release the lease.

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use horizon_shared::layout::Hour;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use crate::commit::{
    self, Acquired, FORMAT, FileEntry, Lease, Manifest, StoreError, list_all, load_manifests,
    store_err,
};
use crate::keys::{Keys, Unit, manifest_shards};
use crate::merge::{self, Counts, LocalFile, MergeError, Orderer, OutputFiles, Source};
use crate::settings::{RawRetention, Settings};

/// Where a run can be made to stop as if it crashed (tests of crash safety).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// After the new files are staged, before the commit.
    AfterStaging,
    /// Right after the manifest is committed.
    AfterCommit,
    /// After the first staged file is copied into the partition.
    AfterFirstCopy,
    /// After the first superseded file is deleted.
    AfterFirstOldDelete,
    /// After the first folded raw object is deleted.
    AfterFirstRawDelete,
    /// With everything done but the lease release.
    BeforeRelease,
}

impl Fault {
    /// Every fault point, in protocol order.
    pub const ALL: [Fault; 6] = [
        Fault::AfterStaging,
        Fault::AfterCommit,
        Fault::AfterFirstCopy,
        Fault::AfterFirstOldDelete,
        Fault::AfterFirstRawDelete,
        Fault::BeforeRelease,
    ];
}

/// Why a unit failed.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Merging failed.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// A local file operation failed.
    #[error("work directory {path}: {source}")]
    Local {
        /// The path.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The lease expired and another run took the unit before the commit.
    #[error(
        "lost the lease before committing (the run took longer than lease_secs); nothing was committed"
    )]
    LostLease,
    /// The generation to commit already exists (another run committed it).
    #[error("generation {0} was committed by another run; nothing was committed by this one")]
    Conflict(u64),
    /// A file the current manifest lists is neither in the partition nor staged.
    #[error("committed file {0} is missing from the store (neither in its partition nor staged)")]
    Missing(String),
    /// A fault was injected here.
    #[error("injected fault {0:?}")]
    Injected(Fault),
    /// A blocking task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What happened to a unit.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A new generation was committed.
    Compacted(Compacted),
    /// Nothing new to fold in (bookkeeping may have been settled).
    UpToDate {
        /// Current generation (0: never compacted).
        generation: u64,
        /// Raw objects deleted (folded by an earlier run).
        raw_deleted: usize,
    },
    /// Another run holds the unit.
    Busy {
        /// The holder.
        owner: String,
        /// Lease expiry, Unix ms.
        expires_at_ms: i64,
    },
    /// Dry run: what a run would do.
    Planned(Planned),
}

/// A committed generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Compacted {
    /// The new generation.
    pub generation: u64,
    /// Raw objects folded in by this run.
    pub raw_objects: usize,
    /// Their size.
    pub raw_bytes: u64,
    /// Rows read: the new raw rows (this shard's) plus the previous generation's.
    pub rows_in: u64,
    /// Rows committed.
    pub rows_out: u64,
    /// Files committed.
    pub files: usize,
    /// Bytes committed.
    pub bytes: u64,
    /// Raw objects deleted after the commit.
    pub raw_deleted: usize,
    /// Unreadable raw objects moved to the quarantine prefix.
    pub quarantined: Vec<String>,
}

/// A dry run's plan for a unit.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// Current generation (0: never compacted).
    pub generation: u64,
    /// Rows in it.
    pub rows: u64,
    /// Raw objects a run would fold in.
    pub new_raw_objects: usize,
    /// Their size.
    pub new_raw_bytes: u64,
}

/// Everything a unit run needs.
pub(crate) struct Ctx<'a> {
    pub store: &'a Arc<dyn ObjectStore>,
    pub keys: &'a Keys,
    pub settings: &'a Settings,
    pub owner: &'a str,
    pub now_ms: &'a (dyn Fn() -> i64 + Send + Sync),
    pub fault: Option<Fault>,
}

impl Ctx<'_> {
    fn check(&self, at: Fault) -> Result<(), UnitError> {
        if self.fault == Some(at) {
            Err(UnitError::Injected(at))
        } else {
            Ok(())
        }
    }
}

/// The shard count an hour was first compacted with, if it was.
pub(crate) async fn existing_shards(
    store: &Arc<dyn ObjectStore>,
    keys: &Keys,
    hour: Hour,
) -> Result<Option<u32>, StoreError> {
    Ok(list_all(store, &keys.manifest_hour_dir(hour))
        .await?
        .iter()
        .find_map(|m| manifest_shards(&m.location)))
}

/// Raw objects of an hour (not quarantined ones).
async fn list_raw(ctx: &Ctx<'_>, hour: Hour) -> Result<Vec<ObjectMeta>, StoreError> {
    let mut v: Vec<ObjectMeta> = list_all(ctx.store, &ctx.keys.raw_dir(hour))
        .await?
        .into_iter()
        .filter(|m| m.location.as_ref().ends_with(".parquet"))
        .collect();
    v.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(v)
}

/// Raw keys folded by every shard of the hour (deletable under `delete`).
async fn folded_by_all(
    ctx: &Ctx<'_>,
    unit: Unit,
    own: &Manifest,
) -> Result<HashSet<String>, StoreError> {
    let mut all: HashSet<String> = own.raw_folded.iter().cloned().collect();
    for s in 0..unit.shards {
        if s == unit.shard {
            continue;
        }
        let other = Unit { shard: s, ..unit };
        match load_manifests(ctx.store, ctx.keys, other).await?.0 {
            Some(m) => {
                let theirs: HashSet<&String> = m.raw_folded.iter().collect();
                all.retain(|k| theirs.contains(k));
            }
            None => return Ok(HashSet::new()),
        }
    }
    Ok(all)
}

/// Brings the store in line with a committed manifest (or with none):
/// copies its staged files into place, deletes what it does not list.
async fn settle(
    ctx: &Ctx<'_>,
    unit: Unit,
    current: Option<&Manifest>,
    older: &[Path],
) -> Result<(), UnitError> {
    let prefix = Keys::part_prefix(unit.shard);
    let ours = |m: &ObjectMeta| {
        m.location
            .filename()
            .is_some_and(|f| f.starts_with(&prefix))
    };
    let finals: Vec<Path> = list_all(ctx.store, &ctx.keys.partition_dir(unit.hour))
        .await?
        .into_iter()
        .filter(ours)
        .map(|m| m.location)
        .collect();
    let staged: Vec<Path> = list_all(ctx.store, &ctx.keys.staging_dir(unit.hour))
        .await?
        .into_iter()
        .filter(ours)
        .map(|m| m.location)
        .collect();
    let final_set: HashSet<&str> = finals.iter().map(|p| p.as_ref()).collect();
    let staged_set: HashSet<&str> = staged.iter().map(|p| p.as_ref()).collect();
    let files = current.map(|m| m.files.as_slice()).unwrap_or_default();
    let mut copied = 0;
    for f in files {
        if final_set.contains(f.key.as_str()) {
            continue;
        }
        if !staged_set.contains(f.staged.as_str()) {
            return Err(UnitError::Missing(f.key.clone()));
        }
        let (from, to) = (Path::from(f.staged.as_str()), Path::from(f.key.as_str()));
        ctx.store
            .copy(&from, &to)
            .await
            .map_err(store_err("copy", &from))?;
        copied += 1;
        if copied == 1 {
            ctx.check(Fault::AfterFirstCopy)?;
        }
    }
    let listed: HashSet<&str> = files.iter().map(|f| f.key.as_str()).collect();
    let mut deleted = 0;
    for key in finals.iter().filter(|k| !listed.contains(k.as_ref())) {
        delete(ctx, key).await?;
        deleted += 1;
        if deleted == 1 {
            ctx.check(Fault::AfterFirstOldDelete)?;
        }
    }
    for key in staged.iter().chain(older) {
        delete(ctx, key).await?;
    }
    if copied + deleted > 0 {
        info!(unit = %unit, copied, deleted, "settled the committed generation");
    }
    Ok(())
}

async fn delete(ctx: &Ctx<'_>, key: &Path) -> Result<(), StoreError> {
    match ctx.store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_err("delete", key)(e)),
    }
}

/// Deletes raw objects every shard has folded (retention `delete`).
async fn delete_folded_raw(
    ctx: &Ctx<'_>,
    unit: Unit,
    current: Option<&Manifest>,
    raw: &mut Vec<ObjectMeta>,
) -> Result<usize, UnitError> {
    let Some(m) = current else { return Ok(0) };
    if ctx.settings.raw_retention != RawRetention::Delete {
        return Ok(0);
    }
    let done = folded_by_all(ctx, unit, m).await?;
    let mut n = 0;
    for obj in raw.iter().filter(|o| done.contains(o.location.as_ref())) {
        delete(ctx, &obj.location).await?;
        n += 1;
        if n == 1 {
            ctx.check(Fault::AfterFirstRawDelete)?;
        }
    }
    raw.retain(|o| !done.contains(o.location.as_ref()));
    Ok(n)
}

/// Raw objects the current generation has not folded in.
fn unfolded(raw: &[ObjectMeta], current: Option<&Manifest>) -> Vec<ObjectMeta> {
    let folded: HashSet<&str> = current
        .iter()
        .flat_map(|m| m.raw_folded.iter().map(String::as_str))
        .collect();
    raw.iter()
        .filter(|o| !folded.contains(o.location.as_ref()))
        .cloned()
        .collect()
}

/// Dry run: what a run of the unit would fold in.
pub(crate) async fn plan(ctx: &Ctx<'_>, unit: Unit) -> Result<Outcome, UnitError> {
    let (current, _) = load_manifests(ctx.store, ctx.keys, unit).await?;
    let new = unfolded(&list_raw(ctx, unit.hour).await?, current.as_ref());
    Ok(Outcome::Planned(Planned {
        generation: current.as_ref().map_or(0, |m| m.generation),
        rows: current.as_ref().map_or(0, |m| m.rows),
        new_raw_objects: new.len(),
        new_raw_bytes: new.iter().map(|o| o.size).sum(),
    }))
}

/// Runs a unit under its lease.
pub(crate) async fn run(ctx: &Ctx<'_>, unit: Unit) -> Result<Outcome, UnitError> {
    let now = (ctx.now_ms)();
    let lease_ms =
        i64::try_from(ctx.settings.lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 4);
    let mut lease =
        match Lease::acquire(ctx.store, ctx.keys, unit, ctx.owner, now, lease_ms).await? {
            Acquired::Held(l) => l,
            Acquired::Busy {
                owner,
                expires_at_ms,
            } => {
                return Ok(Outcome::Busy {
                    owner,
                    expires_at_ms,
                });
            }
        };
    let result = run_held(ctx, unit, &mut lease).await;
    match &result {
        Err(UnitError::Injected(_)) => {} // a simulated crash: leave the lease to expire
        Err(_) | Ok(_) => {
            if let Err(e) = lease.release().await {
                warn!(unit = %unit, error = %e, "could not release the lease; it expires on its own");
            }
        }
    }
    result
}

async fn run_held(ctx: &Ctx<'_>, unit: Unit, lease: &mut Lease) -> Result<Outcome, UnitError> {
    let (current, older) = load_manifests(ctx.store, ctx.keys, unit).await?;
    settle(ctx, unit, current.as_ref(), &older).await?;
    let mut raw = list_raw(ctx, unit.hour).await?;
    let mut raw_deleted = delete_folded_raw(ctx, unit, current.as_ref(), &mut raw).await?;
    let new = unfolded(&raw, current.as_ref());
    let generation = current.as_ref().map_or(0, |m| m.generation);
    if new.is_empty() {
        ctx.check(Fault::BeforeRelease)?;
        return Ok(Outcome::UpToDate {
            generation,
            raw_deleted,
        });
    }

    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("horizon-compactor-")
        .tempdir_in(ctx.settings.work_dir())
        .map_err(|source| UnitError::Local {
            path: ctx.settings.work_dir(),
            source,
        })?;
    let mut stats = Compacted {
        generation: generation + 1,
        ..Compacted::default()
    };
    let prev_rows = current.as_ref().map_or(0, |m| m.rows);
    let mut sources: Vec<PathBuf> = Vec::new();
    if let Some(m) = &current {
        for (i, f) in m.files.iter().enumerate() {
            let local = work.path().join(format!("prev-{i:04}.parquet"));
            download(ctx.store, &Path::from(f.key.as_str()), &local).await?;
            sources.push(local);
        }
    }
    let sorted = sort_raw(ctx, unit, &new, work.path()).await?;
    sources.extend(sorted.runs);
    stats.raw_objects = sorted.folded.len();
    stats.raw_bytes = sorted.folded_bytes;
    stats.quarantined = sorted.quarantined;
    stats.rows_in = sorted.rows + prev_rows;

    // Merge everything into the output files (blocking).
    let out_dir = work.path().join("out");
    std::fs::create_dir_all(&out_dir).map_err(|source| UnitError::Local {
        path: out_dir.clone(),
        source,
    })?;
    let props = merge::output_properties(
        usize::try_from(ctx.settings.row_group_rows).unwrap_or(usize::MAX),
    );
    let target = ctx.settings.target_file_size;
    let (files, counts) = blocking(move || -> Result<(Vec<LocalFile>, Counts), MergeError> {
        let orderer = Orderer::new()?;
        let srcs = sources
            .iter()
            .map(|p| merge::open_source(p))
            .collect::<Result<Vec<Source>, _>>()?;
        let mut out = OutputFiles::new(&out_dir, "part", props, target);
        let counts = merge::merge(&orderer, srcs, |b| out.write(&b))?;
        Ok((out.finish()?, counts))
    })
    .await??;
    stats.rows_out = counts.rows_out;

    // Stage the files, then commit.
    let next = generation + 1;
    let mut entries = Vec::with_capacity(files.len());
    for (n, f) in files.iter().enumerate() {
        let staged = ctx.keys.staged_file(unit, next, lease.epoch, n);
        upload(ctx.store, &f.path, &staged).await?;
        entries.push(FileEntry {
            key: ctx.keys.final_file(unit, next, n).to_string(),
            staged: staged.to_string(),
            rows: f.rows,
            bytes: f.bytes,
        });
    }
    stats.files = entries.len();
    stats.bytes = entries.iter().map(|e| e.bytes).sum();
    ctx.check(Fault::AfterStaging)?;

    if !lease.renew((ctx.now_ms)()).await? {
        return Err(UnitError::LostLease);
    }
    // Raw objects still present that were folded before, plus those folded now.
    let present: HashSet<&str> = raw.iter().map(|o| o.location.as_ref()).collect();
    let mut raw_folded: Vec<String> = current
        .iter()
        .flat_map(|m| m.raw_folded.iter())
        .filter(|k| present.contains(k.as_str()))
        .cloned()
        .chain(sorted.folded)
        .collect();
    raw_folded.sort();
    raw_folded.dedup();
    let manifest = Manifest {
        format: FORMAT,
        hour: unit.hour.to_string(),
        shard: unit.shard,
        shards: unit.shards,
        generation: next,
        epoch: lease.epoch,
        committed_at_ms: (ctx.now_ms)(),
        rows: stats.rows_out,
        files: entries,
        raw_folded,
    };
    if !commit::commit(ctx.store, ctx.keys, unit, &manifest).await? {
        return Err(UnitError::Conflict(next));
    }
    info!(
        unit = %unit, generation = next, rows = stats.rows_out, files = stats.files,
        raw_objects = stats.raw_objects, duplicates = stats.rows_in - stats.rows_out,
        elapsed_ms = started.elapsed().as_millis() as u64, "committed"
    );
    ctx.check(Fault::AfterCommit)?;

    // The committed generation is the current one now; the one it replaces
    // (if any) is the only older manifest left after the first settle.
    let replaced: Vec<Path> = current
        .iter()
        .map(|m| ctx.keys.manifest(unit, m.generation))
        .collect();
    settle(ctx, unit, Some(&manifest), &replaced).await?;
    raw_deleted += delete_folded_raw(ctx, unit, Some(&manifest), &mut raw).await?;
    stats.raw_deleted = raw_deleted;
    ctx.check(Fault::BeforeRelease)?;
    Ok(Outcome::Compacted(stats))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, UnitError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UnitError::Internal(e.to_string()))
}

/// Streams an object into a local file.
async fn download(store: &Arc<dyn ObjectStore>, key: &Path, to: &FsPath) -> Result<(), UnitError> {
    let local = |source| UnitError::Local {
        path: to.to_owned(),
        source,
    };
    let mut stream = store
        .get(key)
        .await
        .map_err(store_err("get", key))?
        .into_stream();
    let mut file = tokio::fs::File::create(to).await.map_err(local)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(store_err("get", key))?;
        file.write_all(&chunk).await.map_err(local)?;
    }
    file.flush().await.map_err(local)?;
    Ok(())
}

/// Streams a local file into an object (multipart when large).
async fn upload(store: &Arc<dyn ObjectStore>, from: &FsPath, key: &Path) -> Result<(), UnitError> {
    let local = |source| UnitError::Local {
        path: from.to_owned(),
        source,
    };
    // BufWriter reports store failures as io::Error.
    let put = |e: std::io::Error| {
        UnitError::Store(store_err("put", key)(object_store::Error::Generic {
            store: "upload",
            source: Box::new(e),
        }))
    };
    let mut file = tokio::fs::File::open(from).await.map_err(local)?;
    let mut w = BufWriter::new(Arc::clone(store), key.clone());
    if let Err(e) = tokio::io::copy(&mut file, &mut w).await {
        let _ = w.abort().await;
        return Err(put(e));
    }
    w.shutdown().await.map_err(put)
}

/// Decodes one raw object into this shard's batches, or says why it cannot.
fn decode_raw(bytes: Bytes, unit: Unit) -> Result<Vec<RecordBatch>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    merge::check_raw_schema(reader.schema())?;
    let reader = reader
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| e.to_string())?;
        let b = merge::filter_shard(&b, unit.shard, unit.shards).map_err(|e| e.to_string())?;
        if b.num_rows() > 0 {
            out.push(b);
        }
    }
    Ok(out)
}

/// The new raw objects, sorted into runs.
#[derive(Debug, Default)]
struct SortedRaw {
    /// Sorted, deduplicated run files.
    runs: Vec<PathBuf>,
    /// Rows read (this shard's).
    rows: u64,
    /// Keys of unreadable objects, moved to the quarantine prefix.
    quarantined: Vec<String>,
    /// Keys of the objects whose rows are in the runs.
    folded: Vec<String>,
    /// Their size.
    folded_bytes: u64,
}

/// Fetches the new raw objects (bounded concurrency), sorts them in chunks
/// of bounded memory and spills each chunk as a sorted run.
async fn sort_raw(
    ctx: &Ctx<'_>,
    unit: Unit,
    new: &[ObjectMeta],
    dir: &FsPath,
) -> Result<SortedRaw, UnitError> {
    let chunk_limit = ctx.settings.sort_chunk_bytes();
    let store = Arc::clone(ctx.store);
    let mut fetched = futures::stream::iter(new.iter().cloned())
        .map(|meta| {
            let store = Arc::clone(&store);
            async move {
                let bytes = store
                    .get(&meta.location)
                    .await
                    .map_err(store_err("get", &meta.location))?
                    .bytes()
                    .await
                    .map_err(store_err("get", &meta.location))?;
                let decoded = blocking(move || decode_raw(bytes, unit)).await?;
                Ok::<_, UnitError>((meta, decoded))
            }
        })
        .buffered(ctx.settings.read_concurrency as usize);

    let mut out = SortedRaw::default();
    let mut chunk: Vec<RecordBatch> = Vec::new();
    let mut chunk_bytes = 0usize;
    while let Some(item) = fetched.next().await {
        let (meta, decoded) = item?;
        let key = meta.location;
        match decoded {
            Ok(batches) => {
                for b in batches {
                    out.rows += b.num_rows() as u64;
                    chunk_bytes += merge::batch_bytes(&b);
                    chunk.push(b);
                }
                out.folded.push(key.to_string());
                out.folded_bytes += meta.size;
            }
            Err(reason) => {
                let to = ctx.keys.quarantine(&key);
                warn!(object = %key, quarantine = %to, %reason, "raw object is unreadable; moving it aside");
                ctx.store
                    .copy(&key, &to)
                    .await
                    .map_err(store_err("copy", &key))?;
                delete(ctx, &key).await?;
                out.quarantined.push(key.to_string());
            }
        }
        if chunk_bytes >= chunk_limit {
            let n = out.runs.len();
            out.runs
                .extend(spill(std::mem::take(&mut chunk), dir, n).await?);
            chunk_bytes = 0;
        }
    }
    if !chunk.is_empty() {
        let n = out.runs.len();
        out.runs.extend(spill(chunk, dir, n).await?);
    }
    Ok(out)
}

/// Sorts and deduplicates a chunk and writes it as a local run file.
async fn spill(chunk: Vec<RecordBatch>, dir: &FsPath, n: usize) -> Result<Vec<PathBuf>, UnitError> {
    let dir = dir.to_owned();
    let files = blocking(move || -> Result<Vec<LocalFile>, MergeError> {
        let orderer = Orderer::new()?;
        let mut out = OutputFiles::new(
            &dir,
            &format!("run-{n:04}"),
            merge::spill_properties(),
            u64::MAX,
        );
        merge::sort_dedup(&orderer, &chunk, |b| out.write(&b))?;
        out.finish()
    })
    .await??;
    Ok(files.into_iter().map(|f| f.path).collect())
}
