//! Sorting, deduplication and k-way merging of raw-schema record batches.
//!
//! Order: the raw format's sort key (`horizon_shared::raw::SORT_KEY`:
//! `metric, node, series_id, time` ascending), then its tie-breaks
//! (`TIE_BREAKS`: `received_at`, `relay`, `value`, ascending).
//! Deduplication keeps the first row of each key in that order: of several
//! copies of a point, the one a relay received first wins, so a resend (a
//! later copy of the same point) never displaces the stored copy; equal
//! receipt times fall to the lesser relay name, then the lesser value, so
//! every run picks the same row (docs/data.md, "Duplicates"). A dropped
//! copy whose value differs from the kept one is counted
//! ([`Counts::value_conflicts`]).
//!
//! - `order.rs`: the [`Orderer`] and the in-memory [`sort_dedup`];
//! - `kway.rs`: the k-way [`merge`] of sorted sources;
//! - `output.rs`: [`OutputFiles`] of a target size, and writer properties;
//! - `shard.rs`: which rows belong to a shard.
//!
//! Everything here is synchronous and CPU-bound: callers run it on blocking
//! threads. The in-memory sort compares fixed-width entries (the strings as
//! ranks, 56 bytes a row); the k-way merge compares rows in arrow's row
//! format (one memcmp per compare), one batch per source.

mod kway;
mod order;
mod output;
mod shard;

use std::path::{Path, PathBuf};

use arrow_schema::ArrowError;

pub use kway::{Source, merge, open_source};
pub use order::{Orderer, SORT_BYTES_PER_ROW, batch_bytes, sort_dedup};
pub use output::{LocalFile, OutputFiles, output_properties, spill_properties};
pub use shard::{filter_shard, shard_buckets, shard_of};

/// Rows per output batch of the sort and the merge.
pub const BATCH_ROWS: usize = 8192;

/// Merge errors.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Arrow failed (a bug or a schema mismatch).
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// Parquet failed reading or writing a local file.
    #[error("parquet ({path}): {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: parquet::errors::ParquetError,
    },
    /// A local file could not be created or opened.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

pub(crate) fn pq(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> MergeError + '_ {
    move |source| MergeError::Parquet {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MergeError + '_ {
    move |source| MergeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Counts of one sort or merge.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Rows read.
    pub rows_in: u64,
    /// Rows written (one per key).
    pub rows_out: u64,
    /// Copies dropped whose value differs from the copy kept in their
    /// place (bit for bit: a NaN equals the same NaN).
    pub value_conflicts: u64,
}

impl Counts {
    /// Rows dropped as copies of a kept row: `rows_in - rows_out`.
    pub fn duplicates(&self) -> u64 {
        self.rows_in.saturating_sub(self.rows_out)
    }
}

#[cfg(test)]
mod tests;
