//! Sorting, deduplication and k-way merging of raw-schema record batches.
//!
//! Order: the raw format's sort key (`horizon_shared::raw::SORT_KEY`:
//! `metric, node, series_id, time` ascending), then its tie-breaks
//! (`TIE_BREAKS`: `received_at`, `relay`, `value`, ascending).
//! Deduplication keeps the first row of each key in that order: of several
//! copies of a point, the one a relay received first wins, so a resend (a
//! later copy of the same point) never displaces the stored copy; equal
//! receipt times fall to the lesser relay name, then the lesser value, so
//! every run picks the same row (docs/data.md, "Duplicates"). A copy
//! dropped against one of another value is counted
//! ([`Counts::value_conflicts`]).
//!
//! - `order.rs`: the [`Orderer`] and the in-memory [`sort_dedup`];
//! - `kway.rs`: the k-way [`merge`] of sorted sources;
//! - `output.rs`: [`OutputFiles`] of a target size, and writer properties;
//! - `shard.rs`: which rows belong to a shard;
//! - `shared.rs`: the batch size, [`Counts`] and [`MergeError`], which the
//!   others share.
//!
//! Everything here is synchronous and CPU-bound: callers run it on blocking
//! threads. The in-memory sort compares fixed-width entries (the strings as
//! ranks, 56 bytes a row); the k-way merge compares rows in arrow's row
//! format (one memcmp per compare), one batch per source.

mod kway;
mod order;
mod output;
mod shard;
mod shared;

pub(crate) use kway::sift_down;
pub use kway::{Source, merge, open_source};
pub use order::{Orderer, SORT_BYTES_PER_ROW, batch_bytes, sort_dedup};
pub use output::{LocalFile, OutputFiles, output_properties, spill_properties};
pub use shard::{filter_shard, shard_buckets, shard_of};
pub(crate) use shared::pq;
pub use shared::{BATCH_ROWS, Counts, MergeError};

#[cfg(test)]
mod tests;
