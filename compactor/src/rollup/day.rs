//! The 1-hour level: one set of files per closed day, so a 90-day question
//! opens about 90 files (docs/data.md, "Rollups").
//!
//! Each unit writes its hour rollup (one row per series) under
//! `<rollups>/_hours/`, listed by its manifest. Once a day has closed (its
//! last hour closed, by the same allowed lateness as compaction), its
//! 1-hour files are those hour files joined in (hour, shard) order, and a
//! day manifest records which generation of each unit they were made of.
//! When a unit of the day commits a later generation (late data), the next
//! run makes the day's files again. The day's files are committed by the
//! same protocol as a unit's (lease, staging, create-only manifest, settle:
//! docs/compaction.md), so readers never see a day's files and their
//! replacement together.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use horizon_shared::layout::Hour;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::files::RollupFiles;
use crate::commit::{FORMAT, FileEntry, Manifest};
use crate::ctx::{Ctx, blocking};
use crate::error::UnitError;
use crate::fault::Fault;
use crate::keys::{Keys, manifest_generation, manifest_shards};
use crate::lease::{Acquired, Lease};
use crate::merge::{self, MergeError};
use crate::settle::replace_files;
use crate::store::{StoreError, create, get_json, list_all};
use crate::transfer::{download, upload};

/// A UTC day, `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    /// Its first hour.
    pub first: Hour,
}

impl Day {
    /// The day holding `hour`.
    pub fn of(hour: Hour) -> Self {
        Self {
            first: Hour::of_secs(hour.start_unix_secs - hour.start_unix_secs.rem_euclid(86_400)),
        }
    }

    /// `YYYY-MM-DD`.
    pub fn name(&self) -> String {
        self.first.parts().0
    }

    /// Its 24 hours.
    pub fn hours(&self) -> impl Iterator<Item = Hour> + use<> {
        let start = self.first.start_unix_secs;
        (0..24).map(move |h| Hour::of_secs(start + h * 3600))
    }

    /// Unix seconds just past its end.
    pub fn end_unix_secs(&self) -> i64 {
        self.first.start_unix_secs + 86_400
    }
}

/// A committed generation of a day's 1-hour files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayManifest {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// Generation, from 1.
    pub generation: u64,
    /// Lease epoch of the run that committed it.
    pub epoch: u64,
    /// Commit time, Unix ms.
    pub committed_at_ms: i64,
    /// The unit generations the files were made of: `HH/shard-SSSS-of-TTTT`
    /// to generation.
    pub sources: BTreeMap<String, u64>,
    /// Rows (series-hours).
    pub rows: u64,
    /// The files.
    pub files: Vec<FileEntry>,
}

/// What a day's run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DayOutcome {
    /// Its files are made of every unit's current generation.
    UpToDate {
        /// The day.
        day: String,
    },
    /// A new generation of its files was committed.
    Built {
        /// The day.
        day: String,
        /// The generation.
        generation: u64,
        /// Rows (series-hours).
        rows: u64,
        /// Files.
        files: usize,
        /// Their bytes.
        bytes: u64,
    },
    /// Not made now (busy, or an hour without rollups).
    Skipped {
        /// The day.
        day: String,
        /// Why.
        reason: String,
    },
}

/// The current manifest of each compacted unit of an hour.
async fn unit_manifests(ctx: &Ctx<'_>, hour: Hour) -> Result<Vec<(String, Manifest)>, StoreError> {
    let mut best: BTreeMap<String, (u64, Path)> = BTreeMap::new();
    for m in list_all(ctx.store, &ctx.keys.manifest_hour_dir(hour)).await? {
        let (Some(g), Some(shards)) = (
            manifest_generation(&m.location),
            manifest_shards(&m.location),
        ) else {
            continue;
        };
        let Some(shard_dir) = m.location.parts().find_map(|p| {
            p.as_ref()
                .starts_with("shard-")
                .then(|| p.as_ref().to_owned())
        }) else {
            continue;
        };
        let _ = shards;
        let slot = best.entry(shard_dir).or_insert((0, m.location.clone()));
        if g >= slot.0 {
            *slot = (g, m.location);
        }
    }
    let mut out = Vec::new();
    for (shard_dir, (_, key)) in best {
        let m: Manifest = get_json(ctx.store, &key, "manifest").await?;
        out.push((format!("{}/{shard_dir}", hour.parts().1), m));
    }
    Ok(out)
}

/// Makes (or confirms) a closed day's 1-hour files under its lease; none
/// for a day without a compacted hour.
pub(crate) async fn run_day(ctx: &Ctx<'_>, day: &Day) -> Result<Option<DayOutcome>, UnitError> {
    let name = day.name();
    let now = (ctx.now_ms)();
    let lease_ms =
        i64::try_from(ctx.settings.lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 4);
    let dir = ctx.keys.day_lease_dir(&name);
    let mut lease = match Lease::acquire(ctx.store, dir, ctx.owner, now, lease_ms).await? {
        Acquired::Held(l) => l,
        Acquired::Busy { owner, .. } => {
            return Ok(Some(DayOutcome::Skipped {
                day: name,
                reason: format!("busy: {owner}"),
            }));
        }
    };
    let result = build(ctx, day, &mut lease).await;
    if !matches!(result, Err(UnitError::Injected(_)))
        && let Err(e) = lease.release().await
    {
        warn!(day = %name, error = %e, "could not release the day's lease; it expires on its own");
    }
    result
}

async fn build(
    ctx: &Ctx<'_>,
    day: &Day,
    lease: &mut Lease,
) -> Result<Option<DayOutcome>, UnitError> {
    let name = day.name();
    let (current, older) = load(ctx, &name).await?;
    settle_day(ctx, &name, current.as_ref(), &older).await?;
    let mut units = Vec::new();
    for hour in day.hours() {
        units.extend(unit_manifests(ctx, hour).await?);
    }
    if units.is_empty() {
        return Ok(None);
    }
    if let Some((unit, _)) = units.iter().find(|(_, m)| m.rollups.is_none()) {
        return Ok(Some(DayOutcome::Skipped {
            day: name.clone(),
            reason: format!(
                "{name}T{unit} was compacted before rollups existed: run `telemetry-compactor rollup --from {name}T00 --to {name}T23`"
            ),
        }));
    }
    let sources: BTreeMap<String, u64> = units
        .iter()
        .map(|(u, m)| (u.clone(), m.generation))
        .collect();
    if current.as_ref().is_some_and(|c| c.sources == sources) {
        ctx.check(Fault::BeforeRelease)?;
        return Ok(Some(DayOutcome::UpToDate { day: name }));
    }
    // The day's files: every unit's hour rollups, merged in key order.
    let work = tempfile::Builder::new()
        .prefix("horizon-day-")
        .tempdir_in({
            let d = ctx.settings.work_dir();
            std::fs::create_dir_all(&d).map_err(|source| UnitError::Local {
                path: d.clone(),
                source,
            })?;
            d
        })
        .map_err(|source| UnitError::Local {
            path: ctx.settings.work_dir(),
            source,
        })?;
    let mut locals = Vec::new();
    for (i, f) in units
        .iter()
        .flat_map(|(_, m)| m.rollups.iter().flat_map(|r| r.hour.iter()))
        .enumerate()
    {
        let p = work.path().join(format!("h-{i:05}.parquet"));
        // A unit committed but not settled yet (a run stopped between the
        // two) has its files at their staged keys only.
        let key = Path::from(f.key.as_str());
        let key = match ctx.store.head(&key).await {
            Err(object_store::Error::NotFound { .. }) => Path::from(f.staged.as_str()),
            _ => key,
        };
        download(ctx.store, &key, &p).await?;
        locals.push(p);
    }
    let out_dir = work.path().to_owned();
    let rg = usize::try_from(ctx.settings.row_group_rows).unwrap_or(usize::MAX);
    let target = ctx.settings.target_file_size;
    let files = blocking(move || join(&locals, &out_dir, rg, target)).await??;
    let next = current.as_ref().map_or(0, |c| c.generation) + 1;
    let mut entries = Vec::new();
    for (n, f) in files.iter().enumerate() {
        let staged = ctx.keys.day_staged(&name, next, lease.epoch, n);
        upload(ctx.store, &f.path, &staged).await?;
        entries.push(FileEntry {
            key: ctx.keys.day_file(&name, next, n).to_string(),
            staged: staged.to_string(),
            rows: f.rows,
            bytes: f.bytes,
            late: false,
            first: None,
        });
    }
    ctx.check(Fault::AfterStaging)?;
    if !lease.renew((ctx.now_ms)()).await? {
        return Err(UnitError::LostLease);
    }
    let m = DayManifest {
        format: FORMAT,
        day: name.clone(),
        generation: next,
        epoch: lease.epoch,
        committed_at_ms: (ctx.now_ms)(),
        sources,
        rows: entries.iter().map(|e| e.rows).sum(),
        files: entries,
    };
    let key = day_manifest(ctx.keys, &name, next);
    let body = serde_json::to_vec_pretty(&m).unwrap_or_default();
    if !create(ctx.store, &key, body).await? {
        return Err(UnitError::Conflict(next));
    }
    info!(day = %name, generation = next, rows = m.rows, files = m.files.len(), "committed the day's 1-hour rollups");
    ctx.check(Fault::AfterCommit)?;
    let replaced: Vec<Path> = current
        .iter()
        .map(|c| day_manifest(ctx.keys, &name, c.generation))
        .collect();
    settle_day(ctx, &name, Some(&m), &replaced).await?;
    ctx.check(Fault::BeforeRelease)?;
    Ok(Some(DayOutcome::Built {
        day: name,
        generation: next,
        rows: m.rows,
        files: m.files.len(),
        bytes: m.files.iter().map(|f| f.bytes).sum(),
    }))
}

/// The unit hours' files merged in sort order into files of the target
/// size.
fn join(
    locals: &[std::path::PathBuf],
    dir: &FsPath,
    row_group_rows: usize,
    target: u64,
) -> Result<Vec<super::RollupFile>, MergeError> {
    let mut out = RollupFiles::new(dir, "day", "1h", row_group_rows, target);
    let sources = locals
        .iter()
        .map(|p| merge::open_source(p))
        .collect::<Result<Vec<_>, _>>()?;
    super::kway::merge(sources, |b| out.write(b))?;
    out.finish()
}

fn day_manifest(keys: &Keys, day: &str, generation: u64) -> Path {
    Path::from(format!(
        "{}/g{generation:06}.json",
        keys.day_manifest_dir(day)
    ))
}

/// The day's current manifest and the keys of older ones.
pub(crate) async fn load(
    ctx: &Ctx<'_>,
    day: &str,
) -> Result<(Option<DayManifest>, Vec<Path>), StoreError> {
    let mut gens: Vec<(u64, Path)> = list_all(ctx.store, &ctx.keys.day_manifest_dir(day))
        .await?
        .into_iter()
        .filter_map(|m| manifest_generation(&m.location).map(|g| (g, m.location)))
        .collect();
    gens.sort();
    let Some((_, key)) = gens.pop() else {
        return Ok((None, Vec::new()));
    };
    let m: DayManifest = get_json(ctx.store, &key, "day manifest").await?;
    Ok((Some(m), gens.into_iter().map(|(_, k)| k).collect()))
}

/// Brings a day's files in line with its manifest: delete what it does not
/// list, then copy its staged files in (never both sets visible), then
/// delete staging leftovers and older manifests.
async fn settle_day(
    ctx: &Ctx<'_>,
    day: &str,
    current: Option<&DayManifest>,
    older: &[Path],
) -> Result<(), UnitError> {
    let paths = |v: Vec<object_store::ObjectMeta>| v.into_iter().map(|m| m.location).collect();
    let finals: Vec<Path> = paths(list_all(ctx.store, &ctx.keys.day_dir(day)).await?);
    let staged: Vec<Path> = paths(list_all(ctx.store, &ctx.keys.day_staging_dir(day)).await?);
    let files: Vec<&FileEntry> = current.iter().flat_map(|m| m.files.iter()).collect();
    replace_files(ctx, &finals, &staged, &files, older).await?;
    Ok(())
}
