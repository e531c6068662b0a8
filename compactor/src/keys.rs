//! Object keys of the compacted dataset and its bookkeeping.
//!
//! ```text
//! <compacted>/dt=D/hour=HH/part-sSSSS-gGGGGGG-NNNN.parquet          committed data files
//! <compacted>/_staging/dt=D/hour=HH/part-sSSSS-gGGGGGG-eEEEEEEEE-NNNN.parquet
//! <compacted>/_manifests/dt=D/hour=HH/shard-SSSS-of-TTTT/gGGGGGG.json
//! <compacted>/_leases/dt=D/hour=HH/shard-SSSS/lease-EEEEEEEE.json
//! <rollups>/1m/dt=D/hour=HH/part-sSSSS-gGGGGGG-NNNN.parquet        minute rollups
//! <rollups>/_hours/dt=D/hour=HH/part-sSSSS-gGGGGGG-NNNN.parquet    a unit's hour rollups
//! <rollups>/1h/dt=D/part-gGGGGGG-NNNN.parquet                      a closed day's 1-hour rollups
//! <rollups>/_manifests/1h/dt=D/gGGGGGG.json                        (and _staging/1h, _leases/1h)
//! ```
//!
//! Readers glob `<compacted>/dt=*/hour=*/*.parquet`; engines that follow
//! Hive conventions also skip the `_`-prefixed folders on their own.

use horizon_shared::layout::Hour;
use object_store::path::Path;

pub use crate::unit::Unit;

/// Key builder for one store's prefixes.
#[derive(Debug, Clone)]
pub struct Keys {
    raw: String,
    compacted: String,
    rollups: String,
}

fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_owned()
    } else {
        format!("{prefix}/{rest}")
    }
}

impl Keys {
    /// Keys under `raw_prefix` and `compacted_prefix` (slashes trimmed),
    /// rollups under `rollups` ([`Keys::with_rollups`] to change it).
    pub fn new(raw_prefix: &str, compacted_prefix: &str) -> Self {
        Self {
            raw: raw_prefix.trim_matches('/').to_owned(),
            compacted: compacted_prefix.trim_matches('/').to_owned(),
            rollups: "rollups".to_owned(),
        }
    }

    /// The same keys with rollups under `rollup_prefix`.
    pub fn with_rollups(mut self, rollup_prefix: &str) -> Self {
        self.rollups = rollup_prefix.trim_matches('/').to_owned();
        self
    }

    /// Minute rollups of an hour (all shards).
    pub fn rollup_minute_dir(&self, hour: Hour) -> Path {
        Path::from(join(&self.rollups, &format!("1m/{}", hour.partition())))
    }

    /// A unit's hour rollups, read by the day's 1-hour files (not by readers).
    pub fn rollup_hours_dir(&self, hour: Hour) -> Path {
        Path::from(join(&self.rollups, &format!("_hours/{}", hour.partition())))
    }

    /// Committed rollup file `n` of generation `g` (`level`: `1m` or `1h`).
    pub fn rollup_file(&self, u: Unit, level: &str, generation: u64, n: usize) -> Path {
        let dir = match level {
            "1m" => self.rollup_minute_dir(u.hour),
            _ => self.rollup_hours_dir(u.hour),
        };
        Path::from(format!(
            "{dir}/{}g{generation:06}-{n:04}.parquet",
            Self::part_prefix(u.shard)
        ))
    }

    /// Staged rollup file `n` of generation `g`, uploaded under epoch `e`
    /// (beside the unit's staged data files, so settling cleans both).
    pub fn staged_rollup(
        &self,
        u: Unit,
        level: &str,
        generation: u64,
        epoch: u64,
        n: usize,
    ) -> Path {
        Path::from(format!(
            "{}/{}g{generation:06}-e{epoch:08}-{level}-{n:04}.parquet",
            self.staging_dir(u.hour),
            Self::part_prefix(u.shard)
        ))
    }

    /// The 1-hour rollup files of a day (`YYYY-MM-DD`).
    pub fn day_dir(&self, day: &str) -> Path {
        Path::from(join(&self.rollups, &format!("1h/dt={day}")))
    }

    /// Committed 1-hour file `n` of a day's generation `g`.
    pub fn day_file(&self, day: &str, generation: u64, n: usize) -> Path {
        Path::from(format!(
            "{}/part-g{generation:06}-{n:04}.parquet",
            self.day_dir(day)
        ))
    }

    /// Staged 1-hour files of a day.
    pub fn day_staging_dir(&self, day: &str) -> Path {
        Path::from(join(&self.rollups, &format!("_staging/1h/dt={day}")))
    }

    /// Staged 1-hour file `n` of a day's generation `g`, epoch `e`.
    pub fn day_staged(&self, day: &str, generation: u64, epoch: u64, n: usize) -> Path {
        Path::from(format!(
            "{}/part-g{generation:06}-e{epoch:08}-{n:04}.parquet",
            self.day_staging_dir(day)
        ))
    }

    /// Manifests of a day's 1-hour files.
    pub fn day_manifest_dir(&self, day: &str) -> Path {
        Path::from(join(&self.rollups, &format!("_manifests/1h/dt={day}")))
    }

    /// Leases of a day's 1-hour files.
    pub fn day_lease_dir(&self, day: &str) -> Path {
        Path::from(join(&self.rollups, &format!("_leases/1h/dt={day}")))
    }

    /// The raw prefix.
    pub fn raw_root(&self) -> Path {
        Path::from(self.raw.as_str())
    }

    /// Raw objects of an hour.
    pub fn raw_dir(&self, hour: Hour) -> Path {
        Path::from(join(&self.raw, &hour.partition()))
    }

    /// Where an unreadable raw object is moved.
    pub fn quarantine(&self, raw_key: &Path) -> Path {
        let rel = raw_key
            .as_ref()
            .strip_prefix(self.raw.as_str())
            .unwrap_or(raw_key.as_ref())
            .trim_start_matches('/');
        Path::from(join(&self.raw, &format!("_quarantine/{rel}")))
    }

    /// The committed files of an hour (all shards).
    pub fn partition_dir(&self, hour: Hour) -> Path {
        Path::from(join(&self.compacted, &hour.partition()))
    }

    /// Staged (uploaded, not yet committed) files of an hour.
    pub fn staging_dir(&self, hour: Hour) -> Path {
        Path::from(join(
            &self.compacted,
            &format!("_staging/{}", hour.partition()),
        ))
    }

    /// Manifests of an hour (all shards).
    pub fn manifest_hour_dir(&self, hour: Hour) -> Path {
        Path::from(join(
            &self.compacted,
            &format!("_manifests/{}", hour.partition()),
        ))
    }

    /// Manifests of a unit.
    pub fn manifest_dir(&self, u: Unit) -> Path {
        Path::from(format!(
            "{}/shard-{:04}-of-{:04}",
            self.manifest_hour_dir(u.hour),
            u.shard,
            u.shards
        ))
    }

    /// Manifest of generation `g` of a unit.
    pub fn manifest(&self, u: Unit, generation: u64) -> Path {
        Path::from(format!("{}/g{generation:06}.json", self.manifest_dir(u)))
    }

    /// Leases of a unit.
    pub fn lease_dir(&self, u: Unit) -> Path {
        Path::from(join(
            &self.compacted,
            &format!("_leases/{}/shard-{:04}", u.hour.partition(), u.shard),
        ))
    }

    /// Lease record of epoch `e` in a lease folder.
    pub fn lease(dir: &Path, epoch: u64) -> Path {
        Path::from(format!("{dir}/lease-{epoch:08}.json"))
    }

    /// File-name prefix of one shard's data files.
    pub fn part_prefix(shard: u32) -> String {
        format!("part-s{shard:04}-")
    }

    /// Committed data file `n` of generation `g`.
    pub fn final_file(&self, u: Unit, generation: u64, n: usize) -> Path {
        Path::from(format!(
            "{}/{}g{generation:06}-{n:04}.parquet",
            self.partition_dir(u.hour),
            Self::part_prefix(u.shard)
        ))
    }

    /// Staged data file `n` of generation `g`, uploaded under lease epoch `e`.
    pub fn staged_file(&self, u: Unit, generation: u64, epoch: u64, n: usize) -> Path {
        Path::from(format!(
            "{}/{}g{generation:06}-e{epoch:08}-{n:04}.parquet",
            self.staging_dir(u.hour),
            Self::part_prefix(u.shard)
        ))
    }
}

/// The generation number of a manifest key (`.../gNNNNNN.json`).
pub fn manifest_generation(key: &Path) -> Option<u64> {
    key.filename()?
        .strip_prefix('g')?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// The shard count named by a manifest key (`.../shard-SSSS-of-TTTT/...`).
pub fn manifest_shards(key: &Path) -> Option<u32> {
    key.parts()
        .find_map(|p| p.as_ref().strip_prefix("shard-").map(str::to_owned))
        .and_then(|p| p.split_once("-of-").and_then(|(_, t)| t.parse().ok()))
}

/// The epoch of a lease key (`.../lease-EEEEEEEE.json`).
pub fn lease_epoch(key: &Path) -> Option<u64> {
    key.filename()?
        .strip_prefix("lease-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("/raw/", "compacted");
        let hour = Hour::parse("2026-11-23T10").unwrap();
        let u = Unit {
            hour,
            shard: 1,
            shards: 4,
        };
        assert_eq!(k.raw_dir(hour).as_ref(), "raw/dt=2026-11-23/hour=10");
        assert_eq!(
            k.final_file(u, 3, 0).as_ref(),
            "compacted/dt=2026-11-23/hour=10/part-s0001-g000003-0000.parquet"
        );
        assert_eq!(
            k.staged_file(u, 3, 9, 2).as_ref(),
            "compacted/_staging/dt=2026-11-23/hour=10/part-s0001-g000003-e00000009-0002.parquet"
        );
        let m = k.manifest(u, 3);
        assert_eq!(
            m.as_ref(),
            "compacted/_manifests/dt=2026-11-23/hour=10/shard-0001-of-0004/g000003.json"
        );
        assert_eq!(manifest_generation(&m), Some(3));
        assert_eq!(manifest_shards(&m), Some(4));
        let l = Keys::lease(&k.lease_dir(u), 12);
        assert_eq!(
            l.as_ref(),
            "compacted/_leases/dt=2026-11-23/hour=10/shard-0001/lease-00000012.json"
        );
        assert_eq!(lease_epoch(&l), Some(12));
        assert_eq!(
            k.quarantine(&Path::from("raw/dt=2026-11-23/hour=10/x.parquet"))
                .as_ref(),
            "raw/_quarantine/dt=2026-11-23/hour=10/x.parquet"
        );
        assert_eq!(
            k.rollup_file(u, "1m", 3, 0).as_ref(),
            "rollups/1m/dt=2026-11-23/hour=10/part-s0001-g000003-0000.parquet"
        );
        assert_eq!(
            k.staged_rollup(u, "1h", 3, 9, 0).as_ref(),
            "compacted/_staging/dt=2026-11-23/hour=10/part-s0001-g000003-e00000009-1h-0000.parquet"
        );
        let r = k.clone().with_rollups("/lake/rollups/");
        assert_eq!(
            r.day_file("2026-11-23", 2, 0).as_ref(),
            "lake/rollups/1h/dt=2026-11-23/part-g000002-0000.parquet"
        );
        let bare = Keys::new("", "");
        assert_eq!(bare.partition_dir(hour).as_ref(), "dt=2026-11-23/hour=10");
    }
}
