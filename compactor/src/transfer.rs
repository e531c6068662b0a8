//! Between the store and the sort: what a unit reads and writes.
//!
//! - `fetch.rs`: objects to and from local files, and a raw object fetched
//!   whole or, for a shard, by its pages;
//! - `decode.rs`: a raw object decoded into the unit's rows, or refused;
//! - `sort.rs`: the new raw objects sorted into spilled runs, and sorted
//!   files merged into output files.

mod decode;
mod fetch;
mod sort;

pub use decode::decode_raw;
pub(crate) use fetch::{download, upload};
pub(crate) use sort::{SortedRaw, merge_files, sort_raw};
