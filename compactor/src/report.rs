//! What a run returns: a report per unit ([`UnitReport`]: its outcome or
//! its error) and for the run ([`Report`]), and the progress callbacks the
//! CLI's progress bar implements ([`Progress`]).

use serde::Serialize;

use crate::late::Routed;
use crate::outcome::Outcome;
use crate::rollup::day::DayOutcome;
use crate::unit::Unit;

/// One unit's result.
#[derive(Debug, Clone, Serialize)]
pub struct UnitReport {
    /// The hour, `YYYY-MM-DDTHH`.
    pub hour: String,
    /// The shard.
    pub shard: u32,
    /// Shards of the hour.
    pub shards: u32,
    /// What happened.
    #[serde(flatten)]
    pub result: UnitResult,
    /// How long it took.
    pub elapsed_ms: u64,
}

/// A unit's outcome or its error.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum UnitResult {
    /// It ran.
    Ok(Outcome),
    /// It failed.
    Failed {
        /// Always "failed".
        outcome: &'static str,
        /// Why.
        error: String,
    },
}

/// A run's report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Units run (or planned), in order.
    pub units: Vec<UnitReport>,
    /// Units not started because the start deadline passed.
    pub not_started: Vec<String>,
    /// The relays' late objects routed to their hours before the units ran.
    pub routed: Routed,
    /// Closed days whose 1-hour rollups were checked after the units ran
    /// (and made again where a unit of the day changed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<DayResult>,
}

/// A day's 1-hour rollups: what happened, or the error.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum DayResult {
    /// It ran.
    Ok(DayOutcome),
    /// It failed.
    Failed {
        /// The day.
        day: String,
        /// Always "failed".
        outcome: &'static str,
        /// Why.
        error: String,
    },
}

impl Report {
    /// Units that failed.
    pub fn failures(&self) -> usize {
        self.units
            .iter()
            .filter(|u| matches!(u.result, UnitResult::Failed { .. }))
            .count()
            + (self.days.iter())
                .filter(|d| matches!(d, DayResult::Failed { .. }))
                .count()
    }

    /// Rows committed by this run.
    pub fn rows_committed(&self) -> u64 {
        self.units
            .iter()
            .map(|u| match &u.result {
                UnitResult::Ok(Outcome::Compacted(c)) => c.rows_out,
                _ => 0,
            })
            .sum()
    }
}

/// Progress callbacks (the CLI's progress bar).
pub trait Progress: Send + Sync {
    /// The units about to run.
    fn planned(&self, _units: &[Unit]) {}
    /// A unit starts.
    fn started(&self, _unit: &Unit) {}
    /// A unit ended.
    fn finished(&self, _report: &UnitReport) {}
}

impl Progress for () {}
