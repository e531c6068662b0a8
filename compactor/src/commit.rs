//! Manifests: the bookkeeping of the commit protocol (docs/compaction.md).
//! A generation is committed by creating its manifest with a create-only
//! write ([`commit`]); the highest generation is the current one
//! ([`load_manifests`]).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::keys::{Keys, manifest_generation};
use crate::store::{StoreError, create, get_json, list_all};
use crate::unit::Unit;

/// Format version of manifests and lease records.
pub const FORMAT: u32 = 1;

/// A committed file of a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its committed key, under the hour's partition.
    pub key: String,
    /// Where it was staged before the commit (copied to `key` after it).
    pub staged: String,
    /// Rows.
    pub rows: u64,
    /// Size.
    pub bytes: u64,
    /// A late file: rows folded in after the unit was compacted, none of
    /// whose keys any other file of the generation holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    /// A rollup file's first series (its files split the unit's series
    /// into ranges, so a late fold rewrites only the ones it touches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<FirstKey>,
}

/// A rollup file's first sort key (its series range starts there).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FirstKey {
    /// Metric.
    pub metric: String,
    /// Node.
    pub node: String,
    /// Series identity.
    pub series_id: i64,
}

impl FirstKey {
    /// As a sort key.
    pub fn as_key(&self) -> (&str, &str, i64) {
        (&self.metric, &self.node, self.series_id)
    }
}

/// A generation's rollup files (docs/data.md, "Rollups").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollups {
    /// Minute rollups, in series order.
    #[serde(rename = "1m")]
    pub minute: Vec<FileEntry>,
    /// The unit's hour rollups (one row per series), which a closed day's
    /// 1-hour files are made of.
    #[serde(rename = "1h")]
    pub hour: Vec<FileEntry>,
}

/// One generation of a unit: exactly the files that hold its rows, and the
/// raw objects already folded into them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The hour, `YYYY-MM-DDTHH`.
    pub hour: String,
    /// The shard.
    pub shard: u32,
    /// Shards of the hour.
    pub shards: u32,
    /// Generation, from 1; each commit adds one.
    pub generation: u64,
    /// Lease epoch of the run that committed it.
    pub epoch: u64,
    /// Commit time, Unix ms.
    pub committed_at_ms: i64,
    /// Rows in all files.
    pub rows: u64,
    /// The files.
    pub files: Vec<FileEntry>,
    /// Raw object keys whose rows are in the files (those still present
    /// when this generation was committed).
    pub raw_folded: Vec<String>,
    /// Commit time of the generation that added the oldest late file still
    /// listed (none: no late files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_since_ms: Option<i64>,
    /// The generation's rollups; none in generations committed before the
    /// compactor wrote rollups (`telemetry-compactor rollup` adds them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollups: Option<Rollups>,
}

impl Manifest {
    /// Rows in late files.
    pub fn late_rows(&self) -> u64 {
        self.files.iter().filter(|f| f.late).map(|f| f.rows).sum()
    }

    /// Late files.
    pub fn late_files(&self) -> usize {
        self.files.iter().filter(|f| f.late).count()
    }

    /// Every file the generation lists: data files, then rollups.
    pub fn all_files(&self) -> impl Iterator<Item = &FileEntry> {
        let r = self.rollups.iter();
        (self.files.iter())
            .chain(r.clone().flat_map(|r| r.minute.iter()))
            .chain(r.flat_map(|r| r.hour.iter()))
    }
}

/// The manifests of a unit: the current one (highest generation) and the
/// keys of older ones.
pub async fn load_manifests(
    store: &Arc<dyn ObjectStore>,
    keys: &Keys,
    unit: Unit,
) -> Result<(Option<Manifest>, Vec<Path>), StoreError> {
    let mut gens: Vec<(u64, Path)> = list_all(store, &keys.manifest_dir(unit))
        .await?
        .into_iter()
        .filter_map(|m| manifest_generation(&m.location).map(|g| (g, m.location)))
        .collect();
    gens.sort();
    let Some((_, current)) = gens.pop() else {
        return Ok((None, Vec::new()));
    };
    let m: Manifest = get_json(store, &current, "manifest").await?;
    Ok((Some(m), gens.into_iter().map(|(_, k)| k).collect()))
}

/// Commits a manifest: creates its generation's key. `Ok(false)`: that
/// generation was committed by another run.
pub async fn commit(
    store: &Arc<dyn ObjectStore>,
    keys: &Keys,
    unit: Unit,
    m: &Manifest,
) -> Result<bool, StoreError> {
    let key = keys.manifest(unit, m.generation);
    let body = serde_json::to_vec_pretty(m).unwrap_or_default();
    create(store, &key, body).await
}
