//! Settling: bringing the store in line with a committed generation (delete
//! what it does not list, copy its staged files into place), and
//! deleting raw objects every shard has folded (retention `delete`).
//! Each step is safe to crash after and to repeat (docs/compaction.md).

use std::collections::HashSet;

use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use tracing::info;

use crate::commit::{FileEntry, Manifest, load_manifests};
use crate::ctx::Ctx;
use crate::error::UnitError;
use crate::fault::Fault;
use crate::keys::Keys;
use crate::settings::RawRetention;
use crate::store::{StoreError, delete, list_all, store_err};
use crate::unit::Unit;

/// Brings the store in line with a committed manifest (or with none):
/// deletes the files it does not list, copies its staged files into place,
/// and deletes the staging leftovers and the `older` manifests.
pub(crate) async fn settle(
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
    // The unit's committed files: data files and both rollup levels.
    let mut finals: Vec<Path> = Vec::new();
    for dir in [
        ctx.keys.partition_dir(unit.hour),
        ctx.keys.rollup_minute_dir(unit.hour),
        ctx.keys.rollup_hours_dir(unit.hour),
    ] {
        let listed = list_all(ctx.store, &dir).await?;
        finals.extend(listed.into_iter().filter(ours).map(|m| m.location));
    }
    let staged: Vec<Path> = list_all(ctx.store, &ctx.keys.staging_dir(unit.hour))
        .await?
        .into_iter()
        .filter(ours)
        .map(|m| m.location)
        .collect();
    let files: Vec<&FileEntry> = current.iter().flat_map(|m| m.all_files()).collect();
    let (copied, deleted) = replace_files(ctx, &finals, &staged, &files, older).await?;
    if copied + deleted > 0 {
        info!(unit = %unit, copied, deleted, "settled the committed generation");
    }
    Ok(())
}

/// Brings committed files in line with a generation's list `files`: deletes
/// the `finals` it does not list, then copies in those of its files still
/// only staged (superseded files go first: a glob reader may miss the
/// replaced rows for that moment, but never sees a row twice: docs/
/// compaction.md, "What a reader sees"), then deletes the `staged` leftovers
/// and the `older` manifests. Returns (copied, deleted).
pub(crate) async fn replace_files(
    ctx: &Ctx<'_>,
    finals: &[Path],
    staged: &[Path],
    files: &[&FileEntry],
    older: &[Path],
) -> Result<(usize, usize), UnitError> {
    let final_set: HashSet<&str> = finals.iter().map(|p| p.as_ref()).collect();
    let staged_set: HashSet<&str> = staged.iter().map(|p| p.as_ref()).collect();
    let listed: HashSet<&str> = files.iter().map(|f| f.key.as_str()).collect();
    let mut deleted = 0;
    for key in finals.iter().filter(|k| !listed.contains(k.as_ref())) {
        delete(ctx.store, key).await?;
        deleted += 1;
        if deleted == 1 {
            ctx.check(Fault::AfterFirstOldDelete)?;
        }
    }
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
    for key in staged.iter().chain(older) {
        delete(ctx.store, key).await?;
    }
    Ok((copied, deleted))
}

/// Deletes raw objects every shard has folded (retention `delete`), and
/// drops them from `raw`. Returns how many.
pub(crate) async fn delete_folded_raw(
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
        delete(ctx.store, &obj.location).await?;
        n += 1;
        if n == 1 {
            ctx.check(Fault::AfterFirstRawDelete)?;
        }
    }
    raw.retain(|o| !done.contains(o.location.as_ref()));
    Ok(n)
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
