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
        /// Unreadable raw objects moved to the quarantine prefix (when
        /// they were all the unit's new objects).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        quarantined: Vec<String>,
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

/// How a generation was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoldKind {
    /// Every file of the unit merged with the new raw rows: a first
    /// compaction, or a major compaction of a compacted unit.
    #[default]
    Full,
    /// Late rows folded beside the committed files: a late file, plus
    /// rewrites of only the files whose rows a late copy replaces.
    Late,
    /// The committed files kept as they are and rollups added (a backfill
    /// of an hour compacted before rollups existed).
    Rollups,
}

/// A committed generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Compacted {
    /// The new generation.
    pub generation: u64,
    /// Full (major) or late fold.
    pub kind: FoldKind,
    /// Raw objects folded in by this run.
    pub raw_objects: usize,
    /// Their size.
    pub raw_bytes: u64,
    /// Rows read: the new raw rows (this shard's) plus the previous generation's.
    pub rows_in: u64,
    /// Rows committed: the whole new generation's.
    pub rows_out: u64,
    /// Rows dropped as copies of a row kept: `rows_in = rows_out +
    /// duplicates`, counted where each copy was dropped.
    pub duplicates: u64,
    /// Of the duplicates, copies dropped against a copy of another value
    /// (bit for bit): not resends but conflicts, decided by the rule
    /// (docs/data.md, "Duplicates"). Each is counted by the step that
    /// dropped it (a chunk's sort, the merge, a late probe), so a key
    /// whose copies disagree counts at least one and a key of two copies
    /// exactly one; zero means no key's copies disagreed.
    pub value_conflicts: u64,
    /// Files written by this run.
    pub files: usize,
    /// Bytes of the files written (uploaded) by this run.
    pub bytes: u64,
    /// Rollup files written (uploaded) by this run, both levels.
    pub rollup_files: usize,
    /// Their bytes.
    pub rollup_bytes: u64,
    /// Bytes read from the store: raw objects, committed files merged or
    /// rewritten, and the parts of committed files a late fold probed.
    pub bytes_read: u64,
    /// Committed files rewritten (a full fold rewrites all of them).
    pub files_rewritten: usize,
    /// Late fold: rows written to the new late file (keys new to the unit).
    pub late_rows: u64,
    /// Late fold: late copies that replaced a committed copy (the rule
    /// preferred them).
    pub late_replaced: u64,
    /// Late fold: late copies dropped (the committed copy wins).
    pub late_dropped: u64,
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
