//! The spool's settings and errors.

use std::path::Path;
use std::time::Duration;

/// When appended records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync after every append.
    EveryBatch,
    /// fsync at most once per interval (on append or [`Spool::sync_if_due`]).
    Interval(Duration),
    /// Never fsync; the OS writes back.
    Never,
}

/// Spool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Size cap of all segments together.
    pub max_bytes: u64,
    /// Size at which a segment is closed.
    pub segment_bytes: u64,
    /// Sync policy.
    pub sync: SyncPolicy,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            segment_bytes: 8 << 20,
            sync: SyncPolicy::Interval(Duration::from_secs(1)),
        }
    }
}

/// Spool errors.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A record is larger than [`MAX_RECORD_BYTES`](super::MAX_RECORD_BYTES).
    #[error("record of {0} bytes exceeds the spool's limit")]
    TooLarge(usize),
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}
