//! The Horizon telemetry compactor: merges each closed hour of the relays'
//! raw Parquet micro-batches into a few large, sorted, snappy-compressed
//! files under `<compacted>/dt=YYYY-MM-DD/hour=HH/`, each point once, with
//! per-series rollups by minute and by hour beside them (`<rollups>/`).
//!
//! One code path behind two entry points: the `telemetry-compactor` CLI and
//! the AWS Lambda function ([`lambda`]). docs/compaction.md describes the
//! layout, the deduplication rule, the commit protocol and how the work
//! scales out.
//!
//! A run lists the selected hours' [`Unit`]s; each unit is planned
//! ([`UnitPlan`]: its current generation and the raw objects not yet folded
//! in), and the plan is either reported (dry run) or executed under the
//! unit's [`Lease`](lease::Lease).
//!
//! The modules, in the order a unit flows through them:
//!
//! - [`unit`](mod@unit): what a unit is (an hour, or a shard of one);
//! - [`plan`]: a unit from plan to commit, its steps listed in order;
//!   `ctx.rs` holds what every step shares, `fault.rs` the crash points;
//! - [`lease`]: which run may work on a unit;
//! - `settle.rs`: the store brought in line with a committed generation;
//! - `transfer/`: raw objects fetched, decoded and sorted into runs; files
//!   to and from the work directory;
//! - [`merge`]: sorting, deduplication and k-way merging of record batches;
//! - `late/`: late objects routed to their hours, late rows folded into a
//!   compacted unit (`sparse.rs`: the pages a shard or a probe reads;
//!   `remote.rs`: a committed file read by parts);
//! - [`rollup`]: the minute and hour rollups each fold makes, the days'
//!   1-hour files, and the backfill;
//! - [`commit`]: manifests, committed by create-only writes; [`store`]: the
//!   store helpers everything above uses;
//! - [`keys`]: the object keys of the compacted dataset and its bookkeeping;
//! - [`settings`]: flags and `HORIZON_*` variables;
//! - [`error`](mod@error), [`outcome`], [`report`]: what a run and a unit
//!   return.

pub mod commit;
mod ctx;
pub mod error;
mod fault;
pub mod keys;
pub mod lambda;
mod late;
pub mod lease;
pub mod merge;
pub mod outcome;
pub mod plan;
mod remote;
pub mod report;
pub mod rollup;
pub mod settings;
mod settle;
mod sparse;
pub mod store;
mod transfer;
pub mod unit;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use horizon_shared::clock::unix_ms_now;
use horizon_shared::layout::Hour;
use object_store::ObjectStore;
use object_store::path::Path;
use tracing::{error, info, warn};

pub use crate::error::{Error, UnitError};
pub use crate::fault::Fault;
pub use crate::keys::Keys;
pub use crate::late::Routed;
pub use crate::outcome::{Compacted, FoldKind, Outcome, Planned};
pub use crate::plan::UnitPlan;
pub use crate::report::{DayResult, Progress, Report, UnitReport, UnitResult};
pub use crate::rollup::day::{Day, DayOutcome};
pub use crate::settings::{RawRetention, Settings};
pub use crate::transfer::decode_raw;
pub use crate::unit::Unit;

/// Which hours to compact.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every hour with raw objects that closed by `now_ms` (ended at least
    /// the allowed lateness before it).
    Closed {
        /// The time to judge by, Unix ms.
        now_ms: i64,
    },
    /// These hours, closed or not (backfills, re-runs).
    Hours(Vec<Hour>),
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print the plan; write nothing.
    pub dry_run: bool,
    /// Only this shard of each hour (for fanning an hour out).
    pub shard: Option<u32>,
    /// Start no unit after this (Unix ms); the rest are reported as not started.
    pub start_deadline_ms: Option<i64>,
}

/// The compactor: a store, its settings, and who is running.
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    keys: Keys,
    settings: Settings,
    owner: String,
    now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
    fault: Option<Fault>,
}

impl std::fmt::Debug for Compactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor")
            .field("store", &self.store.to_string())
            .field("keys", &self.keys)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Compactor {
    /// A compactor for the settings' store.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        settings.validate()?;
        let location = settings.location()?;
        let store = location.build().map_err(|source| Error::OpenStore {
            location: location.to_string(),
            source,
        })?;
        Ok(Self::with_store(settings, store))
    }

    /// A compactor over a given store (settings' store URL ignored).
    pub fn with_store(settings: Settings, store: Arc<dyn ObjectStore>) -> Self {
        let host = std::env::var("HOSTNAME")
            .or_else(|_| std::env::var("AWS_LAMBDA_LOG_STREAM_NAME"))
            .unwrap_or_else(|_| "local".into());
        let owner = format!("{host}/pid-{}/{}", std::process::id(), unix_ms_now());
        Self {
            keys: Keys::new(&settings.raw_prefix, &settings.compacted_prefix)
                .with_rollups(&settings.rollups()),
            store,
            settings,
            owner,
            now_ms: Arc::new(unix_ms_now),
            fault: None,
        }
    }

    /// Replaces the clock that leases use (tests: a crashed run's lease is
    /// taken over by a later "now" without waiting).
    pub fn with_clock(mut self, now_ms: Arc<dyn Fn() -> i64 + Send + Sync>) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Makes every unit stop at `fault` as if the process died there (tests).
    #[doc(hidden)]
    pub fn with_fault(mut self, fault: Option<Fault>) -> Self {
        self.fault = fault;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Hours that have raw objects, oldest first.
    pub async fn raw_hours(&self) -> Result<Vec<Hour>, Error> {
        let root = self.keys.raw_root();
        let list = |p: Path| {
            let store = Arc::clone(&self.store);
            async move {
                store
                    .list_with_delimiter(Some(&p))
                    .await
                    .map_err(|source| Error::List {
                        prefix: p.to_string(),
                        source,
                    })
            }
        };
        let mut hours = BTreeSet::new();
        for day in list(root).await?.common_prefixes {
            if !day.filename().is_some_and(|f| f.starts_with("dt=")) {
                continue;
            }
            for hour in list(day).await?.common_prefixes {
                match Hour::from_key(hour.as_ref()) {
                    Some(h) => {
                        hours.insert(h);
                    }
                    None => warn!(prefix = %hour, "not an hour partition; skipped"),
                }
            }
        }
        Ok(hours.into_iter().collect())
    }

    /// The units of the selected hours.
    pub async fn units(
        &self,
        selection: &Selection,
        shard: Option<u32>,
    ) -> Result<Vec<Unit>, Error> {
        let hours = match selection {
            Selection::Hours(h) => h.clone(),
            Selection::Closed { now_ms } => {
                let lateness =
                    i64::try_from(self.settings.lateness().as_secs()).unwrap_or(i64::MAX / 2);
                let now_secs = now_ms.div_euclid(1000);
                self.raw_hours()
                    .await?
                    .into_iter()
                    .filter(|h| h.end_unix_secs().saturating_add(lateness) <= now_secs)
                    .collect()
            }
        };
        let mut units = Vec::new();
        for hour in hours {
            let shards = plan::existing_shards(&self.store, &self.keys, hour)
                .await?
                .unwrap_or(self.settings.shards);
            match shard {
                Some(s) if s >= shards => {
                    return Err(Error::NoSuchShard {
                        hour,
                        shards,
                        shard: s,
                    });
                }
                Some(s) => units.push(Unit {
                    hour,
                    shard: s,
                    shards,
                }),
                None => units.extend((0..shards).map(|s| Unit {
                    hour,
                    shard: s,
                    shards,
                })),
            }
        }
        Ok(units)
    }

    fn ctx(&self) -> ctx::Ctx<'_> {
        ctx::Ctx {
            store: &self.store,
            keys: &self.keys,
            settings: &self.settings,
            owner: &self.owner,
            now_ms: self.now_ms.as_ref(),
            fault: self.fault,
        }
    }

    /// Makes (or confirms) the 1-hour rollups of the closed days among
    /// `days` (docs/data.md, "Rollups").
    async fn run_days(&self, days: &BTreeSet<Day>) -> Vec<DayResult> {
        let ctx = self.ctx();
        let lateness = i64::try_from(self.settings.lateness().as_secs()).unwrap_or(i64::MAX / 2);
        let now_secs = (self.now_ms)().div_euclid(1000);
        let mut out = Vec::new();
        for day in days {
            if day.end_unix_secs().saturating_add(lateness) > now_secs {
                continue;
            }
            out.push(match rollup::day::run_day(&ctx, day).await {
                Ok(None) => continue,
                Ok(Some(o)) => DayResult::Ok(o),
                Err(e) => {
                    error!(day = %day.name(), error = %e, "the day's 1-hour rollups failed");
                    DayResult::Failed {
                        day: day.name(),
                        outcome: "failed",
                        error: e.to_string(),
                    }
                }
            });
        }
        out
    }

    /// Adds rollups to the compacted units of `hours` that have none (hours
    /// compacted before rollups existed), then makes the 1-hour rollups of
    /// their closed days. Idempotent: a second run finds them up to date.
    pub async fn rollup(&self, hours: &[Hour], progress: &dyn Progress) -> Result<Report, Error> {
        let ctx = self.ctx();
        let mut units = Vec::new();
        for &hour in hours {
            if let Some(shards) = plan::existing_shards(&self.store, &self.keys, hour).await? {
                units.extend((0..shards).map(|shard| Unit {
                    hour,
                    shard,
                    shards,
                }));
            }
        }
        info!(units = units.len(), "rollup backfill");
        progress.planned(&units);
        let mut report = Report::default();
        for unit in &units {
            progress.started(unit);
            let started = Instant::now();
            let result = match rollup::backfill::run(&ctx, *unit).await {
                Ok(o) => UnitResult::Ok(o),
                Err(e) => {
                    error!(unit = %unit, error = %e, "rollup backfill failed");
                    UnitResult::Failed {
                        outcome: "failed",
                        error: e.to_string(),
                    }
                }
            };
            let r = UnitReport {
                hour: unit.hour.to_string(),
                shard: unit.shard,
                shards: unit.shards,
                result,
                elapsed_ms: started.elapsed().as_millis() as u64,
            };
            progress.finished(&r);
            report.units.push(r);
        }
        report.days = self.rollup_days(hours, None).await.days;
        Ok(report)
    }

    /// Compacts (or plans) one unit.
    pub async fn run_unit(&self, unit: Unit, dry_run: bool) -> UnitReport {
        let started = Instant::now();
        let ctx = self.ctx();
        let result = if dry_run {
            plan::dry_run(&ctx, unit).await
        } else {
            plan::run(&ctx, unit).await
        };
        let result = match result {
            Ok(o) => UnitResult::Ok(o),
            Err(e) => {
                error!(unit = %unit, error = %e, "unit failed");
                UnitResult::Failed {
                    outcome: "failed",
                    error: e.to_string(),
                }
            }
        };
        UnitReport {
            hour: unit.hour.to_string(),
            shard: unit.shard,
            shards: unit.shards,
            result,
            elapsed_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// Runs the selected units one after another.
    pub async fn run(
        &self,
        selection: &Selection,
        opts: &RunOptions,
        progress: &dyn Progress,
    ) -> Result<Report, Error> {
        // Late objects first, so their hours are among the units. Runs for
        // one shard of a fan-out leave it to shard 0's.
        let mut routed = Routed::default();
        if !opts.dry_run && opts.shard.is_none_or(|s| s == 0) {
            match late::route_late(&self.store, &self.keys, &self.settings).await {
                Ok(r) => routed = r,
                Err(e) => {
                    error!(error = %e, "routing late objects failed; the next run retries")
                }
            }
        }
        let units = self.units(selection, opts.shard).await?;
        info!(
            units = units.len(),
            dry_run = opts.dry_run,
            "compaction run"
        );
        progress.planned(&units);
        let mut report = Report {
            routed,
            ..Report::default()
        };
        for (i, unit) in units.iter().enumerate() {
            if let Some(deadline) = opts.start_deadline_ms
                && (self.now_ms)() >= deadline
            {
                warn!(
                    remaining = units.len() - i,
                    "start deadline reached; leaving the rest to the next run"
                );
                report.not_started = units[i..].iter().map(ToString::to_string).collect();
                break;
            }
            progress.started(unit);
            let r = self.run_unit(*unit, opts.dry_run).await;
            progress.finished(&r);
            report.units.push(r);
        }
        // A run of every shard makes the days' 1-hour rollups after its
        // units; a fan-out (one shard per run) leaves them to its last step
        // (`rollup_days`), so that no day is made while its units run.
        if !opts.dry_run && opts.shard.is_none() && report.not_started.is_empty() {
            let hours: Vec<Hour> = units.iter().map(|u| u.hour).collect();
            let now_ms = match selection {
                Selection::Closed { now_ms } => Some(*now_ms),
                Selection::Hours(_) => None,
            };
            report.days = self.rollup_days(&hours, now_ms).await.days;
        }
        Ok(report)
    }

    /// Makes (or confirms) the 1-hour rollups of the closed days of `hours`
    /// and, given the time of a scheduled run, of the latest two days that
    /// may have closed since the last one (their last hours may hold no
    /// data, so no unit of theirs ran).
    pub async fn rollup_days(&self, hours: &[Hour], scheduled_ms: Option<i64>) -> Report {
        let mut days: BTreeSet<Day> = hours.iter().map(|h| Day::of(*h)).collect();
        if let Some(now_ms) = scheduled_ms {
            let lateness = i64::try_from(self.settings.lateness().as_secs()).unwrap_or(0);
            let last = now_ms.div_euclid(1000) - lateness - 1;
            days.insert(Day::of(Hour::of_secs(last)));
            days.insert(Day::of(Hour::of_secs(last - 86_400)));
        }
        Report {
            days: self.run_days(&days).await,
            ..Report::default()
        }
    }
}
