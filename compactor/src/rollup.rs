//! Rollups: per-series aggregates over 1-minute and 1-hour intervals,
//! written beside the compacted hours so that questions over months read
//! rollups, not points (docs/data.md, "Rollups"; docs/compaction.md,
//! "Rollups").
//!
//! - `agg.rs`: the aggregates of one interval and how they combine;
//! - `kind.rs`: the metric type, and which series get an `increase`;
//! - `rows.rs`: the rollup schema, rows to batches and back;
//! - `series.rs`: one series' hour folded into minute rows and its hour row;
//! - `build.rs`: a unit's rollups from its final rows in key order (first
//!   and major compactions, backfills);
//! - `files.rs`: local rollup files, with row groups a `metric` filter
//!   prunes;
//! - `late.rs`: a unit's rollups after a late fold, recomputing only the
//!   series-minutes late rows touch (`walk.rs`: a rollup file walked beside
//!   the touched series; `fetch.rs`: committed samples by ranged reads);
//! - `day.rs`: the 1-hour level, one set of files per closed day, the
//!   unit hours' rows merged in key order (`kway.rs`);
//! - `backfill.rs`: rollups for hours compacted before rollups existed.

use crate::commit::{FileEntry, Rollups};

mod agg;
pub(crate) mod backfill;
mod build;
pub(crate) mod day;
mod fetch;
mod files;
mod kind;
mod kway;
pub(crate) mod late;
mod rows;
mod series;
mod walk;

pub use agg::{Agg, Sample, delta};
pub use build::{Builder, Built};
pub use files::{RollupFile, RollupFiles};
pub use kind::Kind;
pub use rows::{Row, RowReader, SeriesKey, rollup_properties, rollup_schema, to_batch};
pub use series::{MINUTE_NS, SeriesAcc, hour_row, minute_of};

/// The new generation's rollup files of one level, in order: `Ok` a
/// committed entry kept as it is, `Err` a new local file to stage.
pub type NewRollupFiles = Vec<Result<FileEntry, RollupFile>>;

/// The new generation's rollups: minute files, then the hour file.
#[derive(Debug, Default)]
pub struct NewRollups {
    /// Minute rollups.
    pub minute: NewRollupFiles,
    /// The unit's hour rollups.
    pub hour: NewRollupFiles,
}

impl NewRollups {
    /// A generation's rollups kept as they are.
    pub fn kept(r: &Rollups) -> Self {
        Self {
            minute: r.minute.iter().cloned().map(Ok).collect(),
            hour: r.hour.iter().cloned().map(Ok).collect(),
        }
    }
}

impl From<Built> for NewRollups {
    fn from(b: Built) -> Self {
        Self {
            minute: b.minute.into_iter().map(Err).collect(),
            hour: b.hour.into_iter().map(Err).collect(),
        }
    }
}
