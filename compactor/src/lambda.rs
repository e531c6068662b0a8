//! The AWS Lambda entry point: a scheduled EventBridge rule invokes the
//! function; it compacts every closed hour (judged by the event's time),
//! starting no unit once the invocation is close to its timeout. Settings
//! come from the environment (`HORIZON_*`, see [`crate::Settings`]).
//!
//! The same function takes targeted work, for fanning a large hour out
//! across parallel invocations: an event (or an EventBridge event's
//! `detail`) of `{"hour": "2026-11-23T10", "shard": 3}` compacts that hour,
//! or that one shard of it; `"dry_run": true` only plans.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::{Compactor, DayResult, RunOptions, Selection, UnitResult};
use horizon_shared::clock::unix_ms_now;
use horizon_shared::layout::{Hour, HourError};

/// An invocation payload that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not an EventBridge event, though it has a `detail-type`.
    #[error("EventBridge event: {0}")]
    EventBridge(#[source] serde_json::Error),
    /// The EventBridge event's `detail` is not a target.
    #[error("event detail: {0}")]
    Detail(#[source] serde_json::Error),
    /// A bare payload that is not a target.
    #[error("event: {0}")]
    Target(#[source] serde_json::Error),
    /// The target's hour is not an hour.
    #[error(transparent)]
    Hour(#[from] HourError),
    /// A shard without an hour.
    #[error("a shard needs an hour")]
    ShardWithoutHour,
}

/// Targeted work in an event.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    #[serde(default)]
    hour: Option<String>,
    #[serde(default)]
    shard: Option<u32>,
    #[serde(default)]
    dry_run: bool,
    /// The state machine's last step: make the 1-hour rollups of the days
    /// of these units (the plan's units, whatever else they carry).
    #[serde(default)]
    rollup_days_of: Option<Vec<UnitOfDay>>,
}

/// A unit of the plan, of which only the hour matters here.
#[derive(Debug, Deserialize)]
struct UnitOfDay {
    hour: String,
}

/// What an invocation asks for, from its payload.
#[derive(Debug)]
pub struct Request {
    /// The time to judge closed hours by, Unix ms.
    pub now_ms: i64,
    /// A single hour, if targeted.
    pub hour: Option<Hour>,
    /// A single shard, if targeted.
    pub shard: Option<u32>,
    /// Plan only.
    pub dry_run: bool,
    /// Only the 1-hour rollups of the days of these hours (and of the
    /// latest closed days).
    pub rollup_days_of: Option<Vec<Hour>>,
}

/// Reads an invocation payload: an EventBridge event (scheduled or custom,
/// with an optional target in `detail`) or a bare target object.
pub fn parse_event(payload: &Value, now_ms: i64) -> Result<Request, EventError> {
    let (target, now_ms) = if payload.get("detail-type").is_some() {
        let ev: EventBridgeEvent<Value> =
            serde_json::from_value(payload.clone()).map_err(EventError::EventBridge)?;
        let target = match &ev.detail {
            Value::Null => Target::default(),
            Value::Object(m) if m.is_empty() => Target::default(),
            d => serde_json::from_value(d.clone()).map_err(EventError::Detail)?,
        };
        (target, ev.time.map_or(now_ms, |t| t.timestamp_millis()))
    } else if payload.is_null() || payload.as_object().is_some_and(|m| m.is_empty()) {
        (Target::default(), now_ms)
    } else {
        let target = serde_json::from_value(payload.clone()).map_err(EventError::Target)?;
        (target, now_ms)
    };
    let hour = target.hour.as_deref().map(Hour::parse).transpose()?;
    if target.shard.is_some() && hour.is_none() {
        return Err(EventError::ShardWithoutHour);
    }
    let rollup_days_of = target
        .rollup_days_of
        .map(|units| {
            units
                .iter()
                .map(|u| Hour::parse(&u.hour))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Request {
        now_ms,
        hour,
        shard: target.shard,
        dry_run: target.dry_run,
        rollup_days_of,
    })
}

/// Handles one invocation.
pub async fn handle(compactor: &Compactor, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let req = parse_event(&event.payload, unix_ms_now())?;
    let margin_ms = i64::try_from(
        compactor
            .settings()
            .lambda_stop_margin_secs
            .saturating_mul(1000),
    )
    .unwrap_or(0);
    // The deadline is Unix ms; some local emulators send a duration instead.
    const YEAR_2000_MS: i64 = 946_684_800_000;
    let deadline = i64::try_from(event.context.deadline)
        .ok()
        .filter(|d| *d > YEAR_2000_MS);
    if deadline.is_none() {
        warn!(
            deadline = event.context.deadline,
            "no usable invocation deadline; units start until the work is done"
        );
    }
    if let Some(hours) = &req.rollup_days_of {
        let report = compactor.rollup_days(hours, Some(req.now_ms)).await;
        let failures = report.failures();
        if failures > 0 {
            return Err(format!("{failures} day(s) failed: {:?}", report.days).into());
        }
        return Ok(json!({ "days": report.days, "failures": 0 }));
    }
    let selection = match req.hour {
        Some(h) => Selection::Hours(vec![h]),
        None => Selection::Closed { now_ms: req.now_ms },
    };
    let opts = RunOptions {
        dry_run: req.dry_run,
        shard: req.shard,
        start_deadline_ms: deadline.map(|d| d - margin_ms),
    };
    info!(request_id = %event.context.request_id, deadline_ms = event.context.deadline, ?selection, "invocation");
    let report = compactor.run(&selection, &opts, &()).await?;
    let failures = report.failures();
    let body = json!({
        "units": report.units,
        "days": report.days,
        "not_started": report.not_started,
        "rows_committed": report.rows_committed(),
        "failures": failures,
    });
    if failures > 0 {
        // Each failure was logged once, with its error, by the run; the
        // invocation's error names the units without repeating it.
        let failed: Vec<String> = report
            .units
            .iter()
            .filter(|u| matches!(u.result, UnitResult::Failed { .. }))
            .map(|u| format!("{} shard {}/{}", u.hour, u.shard, u.shards))
            .chain(report.days.iter().filter_map(|d| match d {
                DayResult::Failed { day, .. } => Some(format!("the 1-hour rollups of {day}")),
                DayResult::Ok(_) => None,
            }))
            .collect();
        return Err(format!(
            "{failures} unit(s) or day(s) failed: {}; rows committed: {}",
            failed.join(", "),
            report.rows_committed()
        )
        .into());
    }
    Ok(body)
}

/// Runs the Lambda runtime loop until the runtime ends the process.
pub async fn serve(compactor: Compactor) -> Result<(), Error> {
    let compactor = &compactor;
    lambda_runtime::run(service_fn(move |event| handle(compactor, event))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scheduled_and_targeted_events() {
        let scheduled = json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-23T11:20:00Z", "region": "eu-west-1",
            "resources": ["arn:aws:events:eu-west-1:123456789012:rule/compactor"], "detail": {}
        });
        let r = parse_event(&scheduled, 0).unwrap();
        assert_eq!(r.now_ms, 1_795_432_800_000);
        assert!(r.hour.is_none() && !r.dry_run);
        let mut targeted = scheduled.clone();
        targeted["detail"] = json!({"hour": "2026-11-23T10", "shard": 2});
        let r = parse_event(&targeted, 0).unwrap();
        assert_eq!(r.hour, Some(Hour::parse("2026-11-23T10").unwrap()));
        assert_eq!(r.shard, Some(2));
        let bare = parse_event(&json!({"hour": "2026-11-23T10", "dry_run": true}), 7).unwrap();
        assert!(bare.dry_run);
        assert_eq!(bare.now_ms, 7);
        assert!(
            parse_event(&json!({"shard": 1}), 0)
                .unwrap_err()
                .to_string()
                .contains("needs an hour")
        );
        assert!(parse_event(&json!({"hour": "yesterday"}), 0).is_err());
        assert!(parse_event(&json!({"hours": "x"}), 0).is_err());
        let days = json!({"rollup_days_of": [{"hour": "2026-11-23T10", "shard": 0, "outcome": "planned"}]});
        let r = parse_event(&days, 0).unwrap();
        assert_eq!(
            r.rollup_days_of,
            Some(vec![Hour::parse("2026-11-23T10").unwrap()])
        );
    }
}
