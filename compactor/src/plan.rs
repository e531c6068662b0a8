//! Planning a unit: what its current generation is and which raw objects
//! it has not folded in. One [`UnitPlan`] serves both the dry run
//! ([`UnitPlan::planned`]) and the run (`UnitPlan::execute`, in
//! `execute.rs`), so the two never disagree.

use std::collections::HashSet;
use std::sync::Arc;

use horizon_shared::layout::Hour;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

use crate::commit::{Manifest, StoreError, list_all, load_manifests};
use crate::execute::Ctx;
use crate::keys::{Keys, manifest_shards};
use crate::outcome::Planned;
use crate::unit::Unit;

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
