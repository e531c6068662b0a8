//! Object keys of the compacted dataset and its bookkeeping.
//!
//! ```text
//! <compacted>/dt=D/hour=HH/part-sSSSS-gGGGGGG-NNNN.parquet          committed data files
//! <compacted>/_staging/dt=D/hour=HH/part-sSSSS-gGGGGGG-eEEEEEEEE-NNNN.parquet
//! <compacted>/_manifests/dt=D/hour=HH/shard-SSSS-of-TTTT/gGGGGGG.json
//! <compacted>/_leases/dt=D/hour=HH/shard-SSSS/lease-EEEEEEEE.json
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
}

fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_owned()
    } else {
        format!("{prefix}/{rest}")
    }
}

impl Keys {
    /// Keys under `raw_prefix` and `compacted_prefix` (slashes trimmed).
    pub fn new(raw_prefix: &str, compacted_prefix: &str) -> Self {
        Self {
            raw: raw_prefix.trim_matches('/').to_owned(),
            compacted: compacted_prefix.trim_matches('/').to_owned(),
        }
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

    /// Lease record of epoch `e`.
    pub fn lease(&self, u: Unit, epoch: u64) -> Path {
        Path::from(format!("{}/lease-{epoch:08}.json", self.lease_dir(u)))
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
        let l = k.lease(u, 12);
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
        let bare = Keys::new("", "");
        assert_eq!(bare.partition_dir(hour).as_ref(), "dt=2026-11-23/hour=10");
    }
}
