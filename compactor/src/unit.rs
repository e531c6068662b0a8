//! A unit of work: an hour, or one shard of an hour. Each unit has its own
//! manifests and lease, and is compacted on its own (docs/compaction.md).

use horizon_shared::layout::Hour;

/// One unit of work: an hour, or one shard of an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unit {
    /// The event hour.
    pub hour: Hour,
    /// This shard.
    pub shard: u32,
    /// Shards the hour is split into (1: not split).
    pub shards: u32,
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.shards > 1 {
            write!(f, "{} shard {}/{}", self.hour, self.shard, self.shards)
        } else {
            write!(f, "{}", self.hour)
        }
    }
}
