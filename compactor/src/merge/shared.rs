//! What the sort, the k-way merge and the output files share: the batch
//! size, the counts of a sort or merge, and the errors (with the local file
//! they concern).

use std::path::{Path, PathBuf};

use arrow_schema::ArrowError;

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
    /// Copies dropped against a copy of another value (bit for bit: a NaN
    /// equals the same NaN), each counted by the step that dropped it,
    /// against the copy that step preferred.
    pub value_conflicts: u64,
}

impl Counts {
    /// Rows dropped as copies of a kept row: `rows_in - rows_out`.
    pub fn duplicates(&self) -> u64 {
        self.rows_in.saturating_sub(self.rows_out)
    }
}
