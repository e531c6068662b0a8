//! What happened to a unit: the serde result of a run or a dry run.

use serde::Serialize;

/// What happened to a unit.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A new generation was committed.
    Compacted(Compacted),
    /// Nothing new to fold in (bookkeeping may have been settled).
    UpToDate {
        /// Current generation (0: never compacted).
        generation: u64,
        /// Raw objects deleted (folded by an earlier run).
        raw_deleted: usize,
    },
    /// Another run holds the unit.
    Busy {
        /// The holder.
        owner: String,
        /// Lease expiry, Unix ms.
        expires_at_ms: i64,
    },
    /// Dry run: what a run would do.
    Planned(Planned),
}

/// A committed generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Compacted {
    /// The new generation.
    pub generation: u64,
    /// Raw objects folded in by this run.
    pub raw_objects: usize,
    /// Their size.
    pub raw_bytes: u64,
    /// Rows read: the new raw rows (this shard's) plus the previous generation's.
    pub rows_in: u64,
    /// Rows committed.
    pub rows_out: u64,
    /// Files committed.
    pub files: usize,
    /// Bytes committed.
    pub bytes: u64,
    /// Raw objects deleted after the commit.
    pub raw_deleted: usize,
    /// Unreadable raw objects moved to the quarantine prefix.
    pub quarantined: Vec<String>,
}

/// A dry run's plan for a unit.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// Current generation (0: never compacted).
    pub generation: u64,
    /// Rows in it.
    pub rows: u64,
    /// Raw objects a run would fold in.
    pub new_raw_objects: usize,
    /// Their size.
    pub new_raw_bytes: u64,
}
