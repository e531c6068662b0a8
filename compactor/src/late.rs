//! Late data: rows that reach an hour after it was compacted
//! (docs/compaction.md, "Late data").
//!
//! - `route.rs`: the relays' late objects (rows of many past hours in one
//!   object per flush) routed to their hours as ordinary raw objects;
//! - `fold.rs`: a compacted unit's new raw rows folded in without
//!   rewriting it: a late file of new keys, and rewrites of only the files
//!   where a late copy wins;
//! - `probe.rs`: which committed row groups could hold a late key, read by
//!   ranged reads of their key columns.
//!
//! [`fold_as_late`] decides between a fold and a major compaction.

mod fold;
mod probe;
mod route;

pub(crate) use fold::fold;
pub use route::Routed;
pub(crate) use route::route_late;

use crate::commit::Manifest;
use crate::settings::Settings;

/// Whether new late rows go to a late file (true) or the unit is rewritten
/// whole (a major compaction): the thresholds of docs/compaction.md.
pub(crate) fn fold_as_late(
    settings: &Settings,
    current: &Manifest,
    new_rows: u64,
    now_ms: i64,
) -> bool {
    let late_rows = current.late_rows() + new_rows;
    let base_rows = current.rows - current.late_rows();
    let share_ok = (late_rows as f64) <= settings.late_major_share * base_rows as f64;
    let files_ok = current.late_files() < settings.late_max_files as usize;
    let age_ms = i64::try_from(settings.late_max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let age_ok = current
        .late_since_ms
        .is_none_or(|t| now_ms.saturating_sub(t) < age_ms);
    share_ok && files_ok && age_ok
}
