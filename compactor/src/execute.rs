//! Running a unit: take its lease, plan it ([`UnitPlan::create`]), then
//! execute the plan. The steps, in order (docs/compaction.md explains why
//! each is safe to crash after):
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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use object_store::ObjectStore;
use object_store::path::Path;
use serde::Serialize;
use tracing::{info, warn};

use crate::commit::{self, Acquired, FORMAT, FileEntry, Lease, Manifest};
use crate::error::UnitError;
use crate::keys::Keys;
use crate::late;
use crate::merge::{self, Counts, LocalFile, MergeError, Orderer, OutputFiles, Source};
use crate::outcome::{Compacted, FoldKind, Outcome};
use crate::plan::UnitPlan;
use crate::settings::Settings;
use crate::settle::{delete_folded_raw, settle};
use crate::transfer::{download, sort_raw, upload};
use crate::unit::Unit;

/// Where a run can be made to stop as if it crashed (tests of crash safety).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// After the new files are staged, before the commit.
    AfterStaging,
    /// Right after the manifest is committed.
    AfterCommit,
    /// After the first superseded file is deleted.
    AfterFirstOldDelete,
    /// After the first staged file is copied into the partition.
    AfterFirstCopy,
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
        Fault::AfterFirstOldDelete,
        Fault::AfterFirstCopy,
        Fault::AfterFirstRawDelete,
        Fault::BeforeRelease,
    ];
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
    /// Stops here if this is the injected fault.
    pub(crate) fn check(&self, at: Fault) -> Result<(), UnitError> {
        if self.fault == Some(at) {
            Err(UnitError::Injected(at))
        } else {
            Ok(())
        }
    }
}

/// Dry run: the unit's plan, nothing written.
pub(crate) async fn dry_run(ctx: &Ctx<'_>, unit: Unit) -> Result<Outcome, UnitError> {
    Ok(Outcome::Planned(
        UnitPlan::create(ctx, unit).await?.planned(),
    ))
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
    let result = match UnitPlan::create(ctx, unit).await {
        Ok(plan) => plan.execute(ctx, &mut lease).await,
        Err(e) => Err(e.into()),
    };
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

impl UnitPlan {
    /// Executes the plan under a held lease: settle, merge, stage, commit,
    /// settle again.
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
        let sorted = sort_raw(ctx, unit, &self.new, work.path()).await?;
        stats.raw_objects = sorted.folded.len();
        stats.raw_bytes = sorted.folded_bytes;
        stats.bytes_read = sorted.bytes_read;
        stats.quarantined = sorted.quarantined;
        let next = generation + 1;
        let now = (ctx.now_ms)();

        // Late data for a compacted unit goes to a late file unless a
        // threshold calls for a major compaction (late.rs).
        let late_fold = match &current {
            Some(m) if late::fold_as_late(ctx.settings, m, sorted.rows, now) => {
                Some(late::fold(ctx, m, sorted.runs.clone(), work.path()).await?)
            }
            _ => None,
        };
        let (files, late_since_ms) = match late_fold {
            Some(f) => {
                stats.kind = FoldKind::Late;
                stats.rows_in = f.rows_in;
                stats.late_rows = f.late_rows;
                stats.late_replaced = f.replaced;
                stats.late_dropped = f.dropped;
                stats.files_rewritten = f.rewritten;
                stats.bytes_read += f.bytes_read;
                let has_late = f.files.iter().any(|e| match e {
                    Ok(c) => c.late,
                    Err((_, late)) => *late,
                });
                let since = current.as_ref().and_then(|m| m.late_since_ms);
                (f.files, has_late.then(|| since.unwrap_or(now)))
            }
            None => {
                let prev_rows = current.as_ref().map_or(0, |m| m.rows);
                let mut sources: Vec<PathBuf> = Vec::new();
                if let Some(m) = &current {
                    for (i, f) in m.files.iter().enumerate() {
                        let local = work.path().join(format!("prev-{i:04}.parquet"));
                        download(ctx.store, &Path::from(f.key.as_str()), &local).await?;
                        stats.bytes_read += f.bytes;
                        sources.push(local);
                    }
                    stats.files_rewritten = m.files.len();
                }
                sources.extend(sorted.runs);
                stats.rows_in = sorted.rows + prev_rows;
                let out_dir = work.path().join("out");
                std::fs::create_dir_all(&out_dir).map_err(|source| UnitError::Local {
                    path: out_dir.clone(),
                    source,
                })?;
                let (files, _) = merge_files(ctx.settings, sources, out_dir).await?;
                (files.into_iter().map(|f| Err((f, false))).collect(), None)
            }
        };

        // Stage the new files, then commit.
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
            let staged = ctx.keys.staged_file(unit, next, lease.epoch, n);
            upload(ctx.store, &f.path, &staged).await?;
            entries.push(FileEntry {
                key: ctx.keys.final_file(unit, next, n).to_string(),
                staged: staged.to_string(),
                rows: f.rows,
                bytes: f.bytes,
                late,
            });
            stats.files += 1;
            stats.bytes += f.bytes;
            n += 1;
        }
        stats.rows_out = entries.iter().map(|e| e.rows).sum();
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
            generation: next,
            epoch: lease.epoch,
            committed_at_ms: (ctx.now_ms)(),
            rows: stats.rows_out,
            files: entries,
            raw_folded,
            late_since_ms,
        };
        if !commit::commit(ctx.store, ctx.keys, unit, &manifest).await? {
            return Err(UnitError::Conflict(next));
        }
        info!(
            unit = %unit, generation = next, kind = ?stats.kind, rows = stats.rows_out,
            files = stats.files, raw_objects = stats.raw_objects, late_rows = stats.late_rows,
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

/// Merges the sorted sources into output files of the target size (on a
/// blocking thread).
pub(crate) async fn merge_files(
    settings: &Settings,
    sources: Vec<PathBuf>,
    out_dir: PathBuf,
) -> Result<(Vec<LocalFile>, Counts), UnitError> {
    let props =
        merge::output_properties(usize::try_from(settings.row_group_rows).unwrap_or(usize::MAX));
    let target = settings.target_file_size;
    let merged = blocking(move || -> Result<(Vec<LocalFile>, Counts), MergeError> {
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
    Ok(merged)
}

/// Runs CPU-bound work on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, UnitError> {
    Ok(tokio::task::spawn_blocking(f).await?)
}
