//! `scrape`: Prometheus / OpenMetrics targets, their defaults and filters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use horizon_shared::config::check::seconds;
use horizon_shared::config::{ConfigError, invalid};
use serde::Deserialize;

use super::Lowered;

/// DCGM writes `DCGM_INT64_BLANK` (0x7ffffffffffffff0) and its neighbours
/// up to 2^63−1 for fields without a value; as doubles they are all about
/// 9.223e18. A value at or above this threshold, of a metric whose name
/// matches the target's `placeholder_metrics` (default `DCGM_*`), is taken
/// as a placeholder.
pub const DEFAULT_PLACEHOLDER_MIN: f64 = 9.2e18;

/// `scrape`: Prometheus / OpenMetrics targets and their defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    /// Default scrape interval, seconds.
    pub interval_secs: f64,
    /// Default scrape timeout, seconds (at most the interval).
    pub timeout_secs: f64,
    /// The targets.
    pub targets: Vec<TargetConfig>,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            interval_secs: 10.0,
            timeout_secs: 5.0,
            targets: Vec::new(),
        }
    }
}

/// One scrape target.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// `http://host:port/path`.
    pub url: String,
    /// Name of the target in the agent's metrics and logs; default: the URL.
    pub name: String,
    /// Scrape interval, seconds; default `scrape.interval_secs`.
    pub interval_secs: Option<f64>,
    /// Scrape timeout, seconds; default `scrape.timeout_secs`.
    pub timeout_secs: Option<f64>,
    /// Labels added to every sample (an exporter's own label of the same key wins).
    pub labels: BTreeMap<String, String>,
    /// Keep only metric names matching one of these patterns (`*` matches
    /// any run of characters); empty: keep all.
    pub allow: Vec<String>,
    /// Drop metric names matching one of these patterns (wins over `allow`).
    pub deny: Vec<String>,
    /// Label keys removed from every sample.
    pub drop_labels: Vec<String>,
    /// Values at or above this, of metrics matching `placeholder_metrics`,
    /// are DCGM "blank" placeholders and dropped (counted); `0` disables the
    /// rule. Default 9.2e18.
    pub placeholder_min: Option<f64>,
    /// Metric-name patterns the placeholder rule applies to; default
    /// `["DCGM_*"]` (node_exporter legitimately reports 2^63−1 and 2^64 for
    /// "unlimited", e.g. `process_virtual_memory_max_bytes`).
    pub placeholder_metrics: Option<Vec<String>>,
}

/// A validated scrape target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Name in metrics and logs.
    pub name: String,
    /// URL.
    pub url: String,
    /// Scrape interval.
    pub interval: Duration,
    /// Scrape timeout.
    pub timeout: Duration,
    /// Extra labels.
    pub labels: Vec<(String, String)>,
    /// Allow patterns.
    pub allow: Vec<String>,
    /// Deny patterns.
    pub deny: Vec<String>,
    /// Labels to drop.
    pub drop_labels: Vec<String>,
    /// Placeholder threshold (`None`: rule disabled).
    pub placeholder_min: Option<f64>,
    /// Metric names the placeholder rule applies to.
    pub placeholder_metrics: Vec<String>,
}

impl ScrapeConfig {
    /// Checks the section: every target, with the section's defaults, and
    /// no two targets of one name. A default timeout lowered to a target's
    /// shorter interval is noted in `lowered`.
    pub fn validate(&self, lowered: &mut Vec<Lowered>) -> Result<Vec<Target>, ConfigError> {
        let interval = seconds("scrape.interval_secs", self.interval_secs)?;
        let timeout = seconds("scrape.timeout_secs", self.timeout_secs)?;
        let mut names = BTreeSet::new();
        let mut targets = Vec::with_capacity(self.targets.len());
        for (i, t) in self.targets.iter().enumerate() {
            let prefix = format!("scrape.targets[{i}]");
            let target = t.validate(&prefix, interval, timeout)?;
            if t.timeout_secs.is_none() && target.timeout < timeout {
                lowered.push(Lowered {
                    setting: format!("{prefix}.timeout_secs"),
                    from: format!(
                        "{} (scrape.timeout_secs)",
                        super::lowered::secs(timeout.as_secs_f64())
                    ),
                    to: super::lowered::secs(target.timeout.as_secs_f64()),
                    by: format!(
                        "{} = {} (a scrape's timeout is at most its interval)",
                        if t.interval_secs.is_some() {
                            format!("{prefix}.interval_secs")
                        } else {
                            "scrape.interval_secs".to_owned()
                        },
                        super::lowered::secs(target.interval.as_secs_f64())
                    ),
                });
            }
            if !names.insert(target.name.clone()) {
                return Err(invalid(
                    format!("scrape.targets[{i}].name"),
                    format!(
                        "{:?} names two targets (give each a distinct name)",
                        target.name
                    ),
                ));
            }
            targets.push(target);
        }
        Ok(targets)
    }
}

impl TargetConfig {
    /// Checks one target; `prefix` (`scrape.targets[i]`) names its keys,
    /// `interval` and `timeout` are the section's defaults.
    pub fn validate(
        &self,
        prefix: &str,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Target, ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if !(self.url.starts_with("http://") || self.url.starts_with("https://"))
            || reqwest::Url::parse(&self.url).is_err()
        {
            return Err(invalid(
                key("url"),
                format!("{:?} is not an http:// or https:// URL", self.url),
            ));
        }
        let interval = match self.interval_secs {
            Some(v) => seconds(&key("interval_secs"), v)?,
            None => interval,
        };
        let timeout = match self.timeout_secs {
            Some(v) => seconds(&key("timeout_secs"), v)?,
            None => timeout.min(interval),
        };
        if timeout > interval {
            return Err(invalid(
                key("timeout_secs"),
                format!(
                    "{} s exceeds the interval of {} s",
                    timeout.as_secs_f64(),
                    interval.as_secs_f64()
                ),
            ));
        }
        for (k, v) in &self.labels {
            let ok_key = !k.is_empty()
                && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                && !horizon_shared::model::is_reserved_label_key(k);
            if !ok_key {
                return Err(invalid(
                    format!("{}.{k}", key("labels")),
                    "label keys are [a-zA-Z0-9_], not node, time or _*",
                ));
            }
            if v.is_empty() {
                return Err(invalid(format!("{}.{k}", key("labels")), "empty value"));
            }
        }
        for (what, list) in [("allow", &self.allow), ("deny", &self.deny)] {
            if let Some(j) = list.iter().position(String::is_empty) {
                return Err(invalid(format!("{}[{j}]", key(what)), "empty pattern"));
            }
        }
        let placeholder_min = match self.placeholder_min {
            None => Some(DEFAULT_PLACEHOLDER_MIN),
            Some(0.0) => None,
            Some(v) if v.is_finite() && v > 0.0 => Some(v),
            Some(v) => {
                return Err(invalid(
                    key("placeholder_min"),
                    format!("{v} is not a positive number (0 disables)"),
                ));
            }
        };
        Ok(Target {
            name: if self.name.is_empty() {
                self.url.clone()
            } else {
                self.name.clone()
            },
            url: self.url.clone(),
            interval,
            timeout,
            labels: self.labels.clone().into_iter().collect(),
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            drop_labels: self.drop_labels.clone(),
            placeholder_min,
            placeholder_metrics: self
                .placeholder_metrics
                .clone()
                .unwrap_or_else(|| vec!["DCGM_*".to_owned()]),
        })
    }
}
