//! The compactor's errors: a run's ([`Error`]) and a unit's ([`UnitError`]).

use std::path::PathBuf;

use horizon_shared::layout::Hour;
use horizon_shared::raw::SchemaMismatch;

use crate::fault::Fault;
use crate::merge::MergeError;
use crate::settings::SettingsError;
use crate::store::StoreError;

/// Why a run (or the compactor) could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings are wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The store could not be opened.
    #[error("cannot open the object store ({location}): {source}")]
    OpenStore {
        /// The store.
        location: String,
        /// What failed.
        source: object_store::Error,
    },
    /// Listing the raw hours failed.
    #[error("listing {prefix}: {source}")]
    List {
        /// The prefix listed.
        prefix: String,
        /// What failed.
        source: object_store::Error,
    },
    /// Reading the hours' manifests failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The shard asked for is not one of the hour's.
    #[error("hour {hour} has {shards} shard(s); shard {shard} does not exist")]
    NoSuchShard {
        /// The hour.
        hour: Hour,
        /// Its shard count.
        shards: u32,
        /// The shard asked for.
        shard: u32,
    },
}

/// Why a unit failed.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Merging failed.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// A local file operation failed.
    #[error("work directory {path}: {source}")]
    Local {
        /// The path.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The lease expired and another run took the unit before the commit.
    #[error(
        "lost the lease before committing (the run took longer than lease_secs); nothing was committed"
    )]
    LostLease,
    /// The generation to commit already exists (another run committed it).
    #[error("generation {0} was committed by another run; nothing was committed by this one")]
    Conflict(u64),
    /// A file the current manifest lists is neither in the partition nor staged.
    #[error("committed file {0} is missing from the store (neither in its partition nor staged)")]
    Missing(String),
    /// A fault was injected here.
    #[error("injected fault {0:?}")]
    Injected(Fault),
    /// A blocking task panicked.
    #[error("internal error: {0}")]
    Internal(#[from] tokio::task::JoinError),
}

/// Why a raw object cannot be read (it is then quarantined).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not Parquet, or damaged.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Parquet, but not of the raw schema.
    #[error(transparent)]
    Schema(#[from] SchemaMismatch),
    /// Its rows could not be filtered to the shard.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The Parquet reader panicked on it (damaged pages it does not check).
    #[error("the Parquet reader failed on a damaged object: {0}")]
    ReaderPanic(String),
}
