//! Scraping Prometheus / OpenMetrics targets: each target on its own task,
//! so a target that hangs, fails or serves garbage delays no other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use horizon_shared::clock::unix_nanos_now;
use horizon_shared::model::{SeriesLimits, canonicalize, is_reserved_label_key, validate_series};
use horizon_shared::proto::Label;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Target;
use crate::expo::{self, Exposition, Format};
use crate::metrics::{Metrics, ScrapeResult, TargetLabel};
use crate::record::OwnedPoint;
use crate::sink::SpoolSink;

/// Largest body read from a target.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// Why a scrape failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeError {
    /// No response within the target's timeout.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// Could not connect.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// A status other than 2xx.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body could not be read (too large, not UTF-8, connection cut).
    #[error("bad body: {0}")]
    Body(String),
    /// Nothing in the body parsed.
    #[error("no sample parsed; first error: {0}")]
    Parse(String),
}

impl ScrapeError {
    /// The `result` label of `horizon_agent_scrapes_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Connect(_) => "connect",
            Self::Status(_) => "http_status",
            Self::Body(_) => "body",
            Self::Parse(_) => "parse",
        }
    }
}

/// Points of one exposition, and what was dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Converted {
    /// Points to spool.
    pub points: Vec<OwnedPoint>,
    /// DCGM placeholders dropped.
    pub placeholder: u64,
    /// NaN and infinities dropped (the relay stores finite values only).
    pub non_finite: u64,
    /// Series the relay would refuse (too long, control characters, ...).
    pub invalid: u64,
    /// Names refused by the target's allow/deny rules.
    pub denied: u64,
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// Whether a target's rules keep a metric name.
pub fn allowed(t: &Target, name: &str) -> bool {
    (t.allow.is_empty() || t.allow.iter().any(|p| glob(p, name)))
        && !t.deny.iter().any(|p| glob(p, name))
}

/// Applies a target's rules to an exposition scraped at `scrape_time_ns`.
///
/// - allow/deny on the sample's name; `drop_labels` removed;
/// - empty label values removed (Prometheus treats them as absent);
/// - the reserved keys `node`, `time` and `_*` renamed `exported_<key>`;
/// - target labels added where the sample lacks the key;
/// - placeholders (value ≥ the target's `placeholder_min`, names matching
///   `placeholder_metrics`) and non-finite
///   values dropped and counted;
/// - the sample's own timestamp used when present, else the scrape time;
/// - its metric type that of its family's `# TYPE` (unspecified if none;
///   [`expo::family`]).
pub fn convert(t: &Target, expo: Exposition, scrape_time_ns: i64) -> Converted {
    let limits = SeriesLimits::default();
    let mut c = Converted::default();
    for s in expo.samples {
        if !allowed(t, &s.name) {
            c.denied += 1;
            continue;
        }
        if t.placeholder_min.is_some_and(|min| s.value >= min)
            && t.placeholder_metrics.iter().any(|p| glob(p, &s.name))
        {
            c.placeholder += 1;
            continue;
        }
        if !s.value.is_finite() {
            c.non_finite += 1;
            continue;
        }
        let mut labels: Vec<Label> = Vec::with_capacity(s.labels.len() + t.labels.len());
        for (k, v) in s.labels {
            if v.is_empty() || t.drop_labels.contains(&k) {
                continue;
            }
            let key = if is_reserved_label_key(&k) {
                format!("exported_{k}")
            } else {
                k
            };
            labels.push(Label { key, value: v });
        }
        for (k, v) in &t.labels {
            if !labels.iter().any(|l| l.key == *k) {
                labels.push(Label {
                    key: k.clone(),
                    value: v.clone(),
                });
            }
        }
        canonicalize(&mut labels);
        if validate_series(&s.name, &labels, &limits).is_err() {
            c.invalid += 1;
            continue;
        }
        let time_unix_nano = s
            .timestamp_ms
            .and_then(|ms| ms.checked_mul(1_000_000))
            .unwrap_or(scrape_time_ns);
        c.points.push(OwnedPoint {
            metric_type: expo::family::metric_type(&expo.types, &s.name),
            metric: s.name,
            labels: labels.into_iter().map(|l| (l.key, l.value)).collect(),
            time_unix_nano,
            value: s.value,
        });
    }
    c
}

/// The HTTP client of every scrape. It asks for gzip (`Accept-Encoding:
/// gzip`) and decompresses a gzipped response as it reads it: exporters
/// built on Prometheus' Go client (node_exporter, dcgm-exporter) compress
/// when asked (node_exporter's page: 57.7 kB, 9.6 kB gzipped).
/// [`MAX_BODY_BYTES`] applies to the decompressed body.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("telemetry-agent/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .build()
}

/// Fetches and parses one exposition.
pub async fn fetch(http: &reqwest::Client, t: &Target) -> Result<Exposition, ScrapeError> {
    let work = async {
        let resp = http
            .get(&t.url)
            .header(
                "accept",
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1",
            )
            .header("x-prometheus-scrape-timeout-seconds", format!("{}", t.timeout.as_secs_f64()))
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    ScrapeError::Connect(root_cause(&e))
                } else {
                    ScrapeError::Body(root_cause(&e))
                }
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ScrapeError::Status(status.as_u16()));
        }
        let format = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map_or(Format::Prometheus, Format::from_content_type);
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ScrapeError::Body(root_cause(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ScrapeError::Body(format!(
                    "larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).map_err(|e| {
            ScrapeError::Body(format!(
                "not UTF-8 at byte {}",
                e.utf8_error().valid_up_to()
            ))
        })?;
        let expo = expo::parse(&text, format);
        if expo.samples.is_empty()
            && let Some(first) = expo.errors.first()
        {
            return Err(ScrapeError::Parse(first.to_string()));
        }
        Ok(expo)
    };
    match tokio::time::timeout(t.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ScrapeError::Timeout(t.timeout)),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

/// Scrapes `t` every interval until `stop`, spooling what it collects.
pub async fn run_target(
    t: Target,
    http: reqwest::Client,
    sink: Arc<SpoolSink>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let label = TargetLabel {
        target: t.name.clone(),
    };
    let mut tick = tokio::time::interval(t.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        let scrape_time = unix_nanos_now();
        let result = fetch(&http, &t).await;
        metrics
            .scrape_duration
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        let kind = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        metrics
            .scrapes
            .get_or_create(&ScrapeResult {
                target: t.name.clone(),
                result: kind.into(),
            })
            .inc();
        match result {
            Ok(expo) => {
                metrics.target_up.get_or_create(&label).set(1);
                if !expo.errors.is_empty() {
                    metrics
                        .scrape_parse_errors
                        .get_or_create(&label)
                        .inc_by(expo.errors.len() as u64);
                    debug!(target = %t.name, lines = expo.errors.len(), first = %expo.errors[0], "exposition lines skipped");
                }
                if last_error.take().is_some() {
                    info!(target = %t.name, url = %t.url, "target is back");
                }
                metrics
                    .scrape_samples
                    .get_or_create(&label)
                    .set(i64::try_from(expo.samples.len()).unwrap_or(i64::MAX));
                let c = convert(&t, expo, scrape_time);
                metrics.dropped("placeholder", c.placeholder);
                metrics.dropped("non_finite", c.non_finite);
                metrics.dropped("invalid", c.invalid);
                metrics.dropped("denied", c.denied);
                sink.push("scrape", &c.points);
            }
            Err(e) => {
                metrics.target_up.get_or_create(&label).set(0);
                let msg = e.to_string();
                if last_error.as_deref() == Some(msg.as_str()) {
                    debug!(target = %t.name, url = %t.url, error = %msg, "scrape failed again");
                } else {
                    warn!(target = %t.name, url = %t.url, error = %msg, "scrape failed");
                    last_error = Some(msg);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_PLACEHOLDER_MIN;

    fn target() -> Target {
        Target {
            name: "t".into(),
            url: "http://x/".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            labels: vec![("cluster".into(), "a".into()), ("gpu".into(), "x".into())],
            allow: vec![],
            deny: vec!["*_PROF_*".into()],
            drop_labels: vec!["Hostname".into()],
            placeholder_min: Some(DEFAULT_PLACEHOLDER_MIN),
            placeholder_metrics: vec!["DCGM_*".into()],
        }
    }

    #[test]
    fn globs() {
        assert!(glob("DCGM_*", "DCGM_FI_DEV_GPU_TEMP"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob("node_cpu_seconds_total", "node_cpu_seconds_total"));
        assert!(!glob("node_cpu", "node_cpu_seconds_total"));
    }

    #[test]
    fn rules_placeholders_and_labels() {
        let text = "\
DCGM_FI_DEV_GPU_TEMP{gpu=\"0\",UUID=\"GPU-1\",Hostname=\"h\",node=\"n1\",empty=\"\"} 40
DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{gpu=\"0\",UUID=\"GPU-1\"} 9223372036854775794
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"0\"} 0.5
process_virtual_memory_max_bytes 1.8446744073709552e+19
nan_metric NaN
bad{a=\"x\\ny\"} 1
stamped 1 1700000000123
";
        let c = convert(&target(), expo::parse(text, Format::Prometheus), 42);
        assert_eq!(
            (c.placeholder, c.denied, c.non_finite, c.invalid),
            (1, 1, 1, 1)
        );
        assert_eq!(c.points.len(), 3);
        assert_eq!(c.points[1].value, 1.844_674_407_370_955_2e19);
        let p = &c.points[0];
        assert_eq!(
            p.labels,
            vec![
                ("UUID".to_owned(), "GPU-1".to_owned()),
                ("cluster".to_owned(), "a".to_owned()),
                ("exported_node".to_owned(), "n1".to_owned()),
                ("gpu".to_owned(), "0".to_owned()),
            ]
        );
        assert_eq!(p.time_unix_nano, 42);
        assert_eq!(c.points[2].time_unix_nano, 1_700_000_000_123_000_000);
    }

    #[test]
    fn each_point_carries_its_familys_type() {
        use horizon_shared::proto::MetricType;
        let text = "\
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu=\"0\"} 40
# TYPE DCGM_FI_PROF_PIPE_TENSOR_ACTIVE counter
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{gpu=\"0\"} 9
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le=\"+Inf\"} 3
rpc_seconds_count 3
untyped_metric 1
";
        let c = convert(&target(), expo::parse(text, Format::Prometheus), 42);
        let got: Vec<(&str, MetricType)> = c
            .points
            .iter()
            .map(|p| (p.metric.as_str(), p.metric_type))
            .collect();
        assert_eq!(
            got,
            [
                ("DCGM_FI_DEV_GPU_TEMP", MetricType::Gauge),
                ("rpc_seconds_bucket", MetricType::Histogram),
                ("rpc_seconds_count", MetricType::Histogram),
                ("untyped_metric", MetricType::Unspecified),
            ]
        );
        assert_eq!(c.denied, 1, "the denied counter is not a point");
    }

    #[test]
    fn the_placeholder_rule_can_be_turned_off() {
        let mut t = target();
        t.placeholder_min = None;
        let c = convert(
            &t,
            expo::parse("x 9223372036854775794\n", Format::Prometheus),
            1,
        );
        assert_eq!(c.points.len(), 1);
    }
}
