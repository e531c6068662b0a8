//! A unit from plan to commit. [`UnitPlan::create`] reads what the unit
//! is (its current generation, the raw objects not yet folded in); the dry
//! run reports it ([`UnitPlan::planned`]) and a run executes it
//! ([`UnitPlan::execute`]), so the two never disagree. The plan and its
//! execution live together, as delta-rs keeps its optimize plan.
//!
//! A run of a unit, in order (docs/compaction.md explains why each step is
//! safe to crash after; [`Fault`] stops a run after each):
//!
//! 1. take the unit's lease;
//! 2. plan: read the current generation, list the raw objects it has not
//!    folded;
//! 3. settle the current generation: delete partition files it does not
//!    list, copy any of its staged files not yet in the partition, delete
//!    staged files and older manifests; delete raw objects every shard has
//!    folded (retention `delete`); no new raw objects: done;
//! 4. sort the new raw objects (in bounded chunks, spilled); then either
//!    fold them as late data (`late.rs`: a late file of new keys, plus
//!    rewrites of only the files where a late copy wins) or, for a first
//!    or major compaction, merge them with every current file (k-way,
//!    deduplicated); write local files of the target size and upload them
//!    to the staging folder;
//! 5. renew the lease (proof that no other run took the unit);
//! 6. commit: create the next generation's manifest (create-only);
//! 7. settle the new generation (step 3 again);
//! 8. release the lease.

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use horizon_shared::layout::Hour;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use tracing::{info, warn};

use crate::commit::{self, FORMAT, FileEntry, Manifest, Rollups, load_manifests};
use crate::ctx::{Ctx, blocking};
use crate::error::UnitError;
use crate::fault::Fault;
use crate::keys::{Keys, manifest_shards};
use crate::late;
use crate::lease::{Acquired, Lease};
use crate::merge::LocalFile;
use crate::outcome::{Compacted, FoldKind, Outcome, Planned};
use crate::rollup::{Builder, NewRollups};
use crate::settle::{delete_folded_raw, settle};
use crate::store::{StoreError, list_all};
use crate::transfer::{SortedRaw, download, merge_files, sort_raw, upload};
use crate::unit::Unit;

/// Dry run: the unit's plan, nothing written.
pub(crate) async fn dry_run(ctx: &Ctx<'_>, unit: Unit) -> Result<Outcome, UnitError> {
    Ok(Outcome::Planned(
        UnitPlan::create(ctx, unit).await?.planned(),
    ))
}

/// Runs a unit under its lease.
pub(crate) async fn run(ctx: &Ctx<'_>, unit: Unit) -> Result<Outcome, UnitError> {
    let mut lease = match take_lease(ctx, unit).await? {
        Ok(l) => l,
        Err(busy) => return Ok(busy),
    };
    let result = match UnitPlan::create(ctx, unit).await {
        Ok(plan) => plan.execute(ctx, &mut lease).await,
        Err(e) => Err(e.into()),
    };
    release(unit, lease, &result).await;
    result
}

/// Takes a unit's lease: `Ok(Err(busy))` if another run holds it.
pub(crate) async fn take_lease(
    ctx: &Ctx<'_>,
    unit: Unit,
) -> Result<Result<Lease, Outcome>, UnitError> {
    let now = (ctx.now_ms)();
    let lease_ms =
        i64::try_from(ctx.settings.lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 4);
    Ok(
        match Lease::acquire(
            ctx.store,
            ctx.keys.lease_dir(unit),
            ctx.owner,
            now,
            lease_ms,
        )
        .await?
        {
            Acquired::Held(l) => Ok(l),
            Acquired::Busy {
                owner,
                expires_at_ms,
            } => Err(Outcome::Busy {
                owner,
                expires_at_ms,
            }),
        },
    )
}

/// Releases a unit's lease after a run, unless the run was a simulated
/// crash (then the lease is left to expire).
pub(crate) async fn release<T>(unit: Unit, lease: Lease, result: &Result<T, UnitError>) {
    if matches!(result, Err(UnitError::Injected(_))) {
        return;
    }
    if let Err(e) = lease.release().await {
        warn!(unit = %unit, error = %e, "could not release the lease; it expires on its own");
    }
}

/// A unit's state and the work a run of it would do.
#[derive(Debug)]
pub struct UnitPlan {
    /// The unit.
    pub unit: Unit,
    /// The current generation's manifest (none: never compacted).
    pub current: Option<Manifest>,
    /// Keys of older manifests (left over by a crash before settling).
    pub older: Vec<Path>,
    /// Every raw object of the hour, by key.
    pub raw: Vec<ObjectMeta>,
    /// The raw objects the current generation has not folded in.
    pub new: Vec<ObjectMeta>,
}

impl UnitPlan {
    /// Reads the unit's manifests and lists its hour's raw objects.
    pub(crate) async fn create(ctx: &Ctx<'_>, unit: Unit) -> Result<Self, StoreError> {
        let (current, older) = load_manifests(ctx.store, ctx.keys, unit).await?;
        let raw = list_raw(ctx.store, ctx.keys, unit.hour).await?;
        let new = unfolded(&raw, current.as_ref());
        Ok(Self {
            unit,
            current,
            older,
            raw,
            new,
        })
    }

    /// The current generation (0: never compacted).
    pub fn generation(&self) -> u64 {
        self.current.as_ref().map_or(0, |m| m.generation)
    }

    /// What a run would do (the dry run's report).
    pub fn planned(&self) -> Planned {
        Planned {
            generation: self.generation(),
            rows: self.current.as_ref().map_or(0, |m| m.rows),
            new_raw_objects: self.new.len(),
            new_raw_bytes: self.new.iter().map(|o| o.size).sum(),
        }
    }

    /// Executes the plan under a held lease: settle (step 3), fold the new
    /// rows (4), stage, renew (5), commit (6), settle again (7).
    pub(crate) async fn execute(
        mut self,
        ctx: &Ctx<'_>,
        lease: &mut Lease,
    ) -> Result<Outcome, UnitError> {
        let unit = self.unit;
        let current = self.current.take();
        settle(ctx, unit, current.as_ref(), &self.older).await?;
        let mut raw_deleted = delete_folded_raw(ctx, unit, current.as_ref(), &mut self.raw).await?;
        let generation = current.as_ref().map_or(0, |m| m.generation);
        if self.new.is_empty() {
            ctx.check(Fault::BeforeRelease)?;
            return Ok(Outcome::UpToDate {
                generation,
                raw_deleted,
                quarantined: Vec::new(),
            });
        }

        let started = Instant::now();
        let work = work_dir(ctx)?;
        let sorted = sort_raw(ctx, unit, &self.new, work.path()).await?;
        if sorted.folded.is_empty() {
            // Every new object was moved aside: nothing to fold, and no
            // generation to commit for it.
            ctx.check(Fault::BeforeRelease)?;
            return Ok(Outcome::UpToDate {
                generation,
                raw_deleted,
                quarantined: sorted.quarantined,
            });
        }
        let mut stats = Compacted {
            generation: generation + 1,
            raw_objects: sorted.folded.len(),
            raw_bytes: sorted.folded_bytes,
            bytes_read: sorted.bytes_read,
            rows_in: sorted.rows + current.as_ref().map_or(0, |m| m.rows),
            duplicates: sorted.duplicates,
            value_conflicts: sorted.value_conflicts,
            quarantined: sorted.quarantined.clone(),
            ..Compacted::default()
        };
        let now = (ctx.now_ms)();
        let (files, rollups, late_since_ms) = fold(
            ctx,
            unit,
            current.as_ref(),
            &sorted,
            work.path(),
            now,
            &mut stats,
        )
        .await?;
        let entries = stage(ctx, unit, stats.generation, lease.epoch, files, &mut stats).await?;
        let rollups = stage_rollups(
            ctx,
            unit,
            stats.generation,
            lease.epoch,
            rollups,
            &mut stats,
        )
        .await?;
        ctx.check(Fault::AfterStaging)?;

        if !lease.renew((ctx.now_ms)()).await? {
            return Err(UnitError::LostLease);
        }
        // Raw objects still present that were folded before, plus those folded now.
        let present: HashSet<&str> = self.raw.iter().map(|o| o.location.as_ref()).collect();
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
            generation: stats.generation,
            epoch: lease.epoch,
            committed_at_ms: (ctx.now_ms)(),
            rows: stats.rows_out,
            files: entries,
            raw_folded,
            late_since_ms,
            rollups: Some(rollups),
        };
        if !commit::commit(ctx.store, ctx.keys, unit, &manifest).await? {
            return Err(UnitError::Conflict(stats.generation));
        }
        info!(
            unit = %unit, generation = stats.generation, kind = ?stats.kind, rows = stats.rows_out,
            files = stats.files, raw_objects = stats.raw_objects, late_rows = stats.late_rows,
            duplicates = stats.duplicates, value_conflicts = stats.value_conflicts,
            files_rewritten = stats.files_rewritten, bytes_read = stats.bytes_read,
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
        raw_deleted += delete_folded_raw(ctx, unit, Some(&manifest), &mut self.raw).await?;
        stats.raw_deleted = raw_deleted;
        ctx.check(Fault::BeforeRelease)?;
        Ok(Outcome::Compacted(stats))
    }
}

/// The new generation's files, in order: `Ok` a committed entry kept as it
/// is, `Err` a new local file to stage (and whether it is a late file).
type NewFiles = Vec<Result<FileEntry, (LocalFile, bool)>>;

/// Step 4: folds the sorted new rows into the unit. Late data for a
/// compacted unit goes beside its files (`late/fold.rs`) unless a threshold
/// calls for a major compaction; a first or major compaction merges the
/// runs with every current file. Returns the generation's files, its
/// rollups (made in the same pass: docs/compaction.md, "Rollups") and when
/// its oldest late file was added. A generation without rollups (committed
/// before they existed) gets a major compaction, which makes them.
async fn fold(
    ctx: &Ctx<'_>,
    unit: Unit,
    current: Option<&Manifest>,
    sorted: &SortedRaw,
    work: &FsPath,
    now: i64,
    stats: &mut Compacted,
) -> Result<(NewFiles, NewRollups, Option<i64>), UnitError> {
    let late_ok = |m: &&Manifest| {
        m.rollups.is_some() && late::fold_as_late(ctx.settings, m, sorted.rows, now)
    };
    if let Some(m) = current.filter(late_ok) {
        let hour_ns = unit.hour.start_unix_secs.saturating_mul(1_000_000_000);
        let f = late::fold(ctx, hour_ns, m, sorted.runs.clone(), work).await?;
        stats.kind = FoldKind::Late;
        stats.late_rows = f.late_rows;
        stats.late_replaced = f.replaced;
        stats.late_dropped = f.dropped;
        stats.files_rewritten = f.rewritten;
        stats.bytes_read += f.bytes_read;
        stats.duplicates += f.duplicates;
        stats.value_conflicts += f.value_conflicts;
        let has_late = f.files.iter().any(|e| match e {
            Ok(c) => c.late,
            Err((_, late)) => *late,
        });
        let since = has_late.then(|| m.late_since_ms.unwrap_or(now));
        return Ok((f.files, f.rollups, since));
    }
    let mut sources: Vec<PathBuf> = Vec::new();
    if let Some(m) = current {
        for (i, f) in m.files.iter().enumerate() {
            let local = work.join(format!("prev-{i:04}.parquet"));
            download(ctx.store, &Path::from(f.key.as_str()), &local).await?;
            stats.bytes_read += f.bytes;
            sources.push(local);
        }
        stats.files_rewritten = m.files.len();
    }
    sources.extend(sorted.runs.iter().cloned());
    let out_dir = work.join("out");
    std::fs::create_dir_all(&out_dir).map_err(|source| UnitError::Local {
        path: out_dir.clone(),
        source,
    })?;
    let rollup_dir = work.join("rollups");
    mkdir(&rollup_dir)?;
    let builder = rollup_builder(ctx, unit, &rollup_dir);
    let (files, counts, builder) = merge_files(ctx.settings, sources, out_dir, builder).await?;
    stats.duplicates += counts.duplicates();
    stats.value_conflicts += counts.value_conflicts;
    let built = blocking(move || builder.finish()).await??;
    let files = files.into_iter().map(|f| Err((f, false))).collect();
    Ok((files, built.into(), None))
}

/// A rollup builder for a unit's hour, writing to `dir`.
pub(crate) fn rollup_builder(ctx: &Ctx<'_>, unit: Unit, dir: &FsPath) -> Builder {
    Builder::new(
        dir,
        unit.hour.start_unix_secs.saturating_mul(1_000_000_000),
        usize::try_from(ctx.settings.row_group_rows).unwrap_or(usize::MAX),
        ctx.settings.target_file_size,
    )
}

fn mkdir(dir: &FsPath) -> Result<(), UnitError> {
    std::fs::create_dir_all(dir).map_err(|source| UnitError::Local {
        path: dir.to_owned(),
        source,
    })
}

/// Uploads the new rollup files to the staging folder; returns the
/// generation's rollup entries (kept ones as they were).
pub(crate) async fn stage_rollups(
    ctx: &Ctx<'_>,
    unit: Unit,
    next: u64,
    epoch: u64,
    rollups: NewRollups,
    stats: &mut Compacted,
) -> Result<Rollups, UnitError> {
    let mut out = Rollups::default();
    for (level, files, entries) in [
        ("1m", rollups.minute, &mut out.minute),
        ("1h", rollups.hour, &mut out.hour),
    ] {
        let mut n = 0;
        for f in files {
            let f = match f {
                Ok(kept) => {
                    entries.push(kept);
                    continue;
                }
                Err(new) => new,
            };
            let staged = ctx.keys.staged_rollup(unit, level, next, epoch, n);
            upload(ctx.store, &f.path, &staged).await?;
            entries.push(FileEntry {
                key: ctx.keys.rollup_file(unit, level, next, n).to_string(),
                staged: staged.to_string(),
                rows: f.rows,
                bytes: f.bytes,
                late: false,
                first: f.first,
            });
            stats.rollup_files += 1;
            stats.rollup_bytes += f.bytes;
            n += 1;
        }
    }
    Ok(out)
}

/// Uploads the new files to the staging folder; returns the generation's
/// entries (kept ones as they were) and counts rows and bytes in `stats`.
async fn stage(
    ctx: &Ctx<'_>,
    unit: Unit,
    next: u64,
    epoch: u64,
    files: NewFiles,
    stats: &mut Compacted,
) -> Result<Vec<FileEntry>, UnitError> {
    let mut entries = Vec::with_capacity(files.len());
    let mut n = 0;
    for f in files {
        let (f, late) = match f {
            Ok(unchanged) => {
                entries.push(unchanged);
                continue;
            }
            Err(new) => new,
        };
        let staged = ctx.keys.staged_file(unit, next, epoch, n);
        upload(ctx.store, &f.path, &staged).await?;
        entries.push(FileEntry {
            key: ctx.keys.final_file(unit, next, n).to_string(),
            staged: staged.to_string(),
            rows: f.rows,
            bytes: f.bytes,
            late,
            first: None,
        });
        stats.files += 1;
        stats.bytes += f.bytes;
        n += 1;
    }
    stats.rows_out = entries.iter().map(|e| e.rows).sum();
    Ok(entries)
}

/// A fresh folder for the unit's local files inside the work directory,
/// which is created first if it is missing (removed with the handle).
pub(crate) fn work_dir(ctx: &Ctx<'_>) -> Result<tempfile::TempDir, UnitError> {
    let dir = ctx.settings.work_dir();
    let local = |source| UnitError::Local {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(local)?;
    tempfile::Builder::new()
        .prefix("horizon-compactor-")
        .tempdir_in(&dir)
        .map_err(local)
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

/// Raw objects of an hour (not quarantined ones), by key.
async fn list_raw(
    store: &Arc<dyn ObjectStore>,
    keys: &Keys,
    hour: Hour,
) -> Result<Vec<ObjectMeta>, StoreError> {
    let mut v: Vec<ObjectMeta> = list_all(store, &keys.raw_dir(hour))
        .await?
        .into_iter()
        .filter(|m| m.location.as_ref().ends_with(".parquet"))
        .collect();
    v.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(v)
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
