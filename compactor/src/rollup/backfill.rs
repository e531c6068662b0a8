//! Rollups for hours compacted before rollups existed
//! (`telemetry-compactor rollup --from --to`): a unit whose current
//! generation has no rollups gets a next generation listing the same files
//! and the rollups made from them. The same lease, staging, create-only
//! commit and settling as any generation, so a crash anywhere is repaired
//! by running again, and a second run finds every unit up to date.

use std::path::PathBuf;
use std::time::Instant;

use object_store::path::Path;
use tracing::info;

use crate::commit::{self, Manifest, load_manifests};
use crate::ctx::{Ctx, blocking};
use crate::error::UnitError;
use crate::fault::Fault;
use crate::merge::{self, MergeError, Orderer, Source};
use crate::outcome::{Compacted, FoldKind, Outcome};
use crate::plan::{release, rollup_builder, stage_rollups, take_lease, work_dir};
use crate::settle::settle;
use crate::transfer::download;
use crate::unit::Unit;

/// Adds rollups to a unit's current generation if it has none.
pub(crate) async fn run(ctx: &Ctx<'_>, unit: Unit) -> Result<Outcome, UnitError> {
    let mut lease = match take_lease(ctx, unit).await? {
        Ok(l) => l,
        Err(busy) => return Ok(busy),
    };
    let result = backfill(ctx, unit, &mut lease).await;
    release(unit, lease, &result).await;
    result
}

async fn backfill(
    ctx: &Ctx<'_>,
    unit: Unit,
    lease: &mut crate::lease::Lease,
) -> Result<Outcome, UnitError> {
    let (current, older) = load_manifests(ctx.store, ctx.keys, unit).await?;
    settle(ctx, unit, current.as_ref(), &older).await?;
    let Some(m) = current.filter(|m| m.rollups.is_none()) else {
        ctx.check(Fault::BeforeRelease)?;
        let generation = load_manifests(ctx.store, ctx.keys, unit)
            .await?
            .0
            .map_or(0, |m| m.generation);
        return Ok(Outcome::UpToDate {
            generation,
            raw_deleted: 0,
            quarantined: Vec::new(),
        });
    };
    let started = Instant::now();
    let work = work_dir(ctx)?;
    let mut stats = Compacted {
        generation: m.generation + 1,
        kind: FoldKind::Rollups,
        rows_in: m.rows,
        rows_out: m.rows,
        ..Compacted::default()
    };
    // The generation's files, merged in key order (a late file overlaps
    // the others' range) into the rollup builder.
    let mut locals: Vec<PathBuf> = Vec::new();
    for (i, f) in m.files.iter().enumerate() {
        let p = work.path().join(format!("file-{i:04}.parquet"));
        download(ctx.store, &Path::from(f.key.as_str()), &p).await?;
        stats.bytes_read += f.bytes;
        locals.push(p);
    }
    let dir = work.path().join("rollups");
    std::fs::create_dir_all(&dir).map_err(|source| UnitError::Local {
        path: dir.clone(),
        source,
    })?;
    let mut builder = rollup_builder(ctx, unit, &dir);
    let built = blocking(move || -> Result<_, MergeError> {
        let orderer = Orderer::new()?;
        let sources = locals
            .iter()
            .map(|p| merge::open_source(p))
            .collect::<Result<Vec<Source>, _>>()?;
        merge::merge(&orderer, sources, |b| builder.push(&b))?;
        builder.finish()
    })
    .await??;
    let rollups = stage_rollups(
        ctx,
        unit,
        stats.generation,
        lease.epoch,
        built.into(),
        &mut stats,
    )
    .await?;
    ctx.check(Fault::AfterStaging)?;
    if !lease.renew((ctx.now_ms)()).await? {
        return Err(UnitError::LostLease);
    }
    let next = Manifest {
        generation: stats.generation,
        epoch: lease.epoch,
        committed_at_ms: (ctx.now_ms)(),
        rollups: Some(rollups),
        ..m.clone()
    };
    if !commit::commit(ctx.store, ctx.keys, unit, &next).await? {
        return Err(UnitError::Conflict(stats.generation));
    }
    info!(
        unit = %unit, generation = stats.generation, rows = m.rows,
        rollup_files = stats.rollup_files, rollup_bytes = stats.rollup_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64, "rollups added"
    );
    ctx.check(Fault::AfterCommit)?;
    let replaced = [ctx.keys.manifest(unit, m.generation)];
    settle(ctx, unit, Some(&next), &replaced).await?;
    ctx.check(Fault::BeforeRelease)?;
    Ok(Outcome::Compacted(stats))
}
