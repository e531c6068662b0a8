//! The agent's own metrics (`horizon_agent_*`) and the HTTP endpoint that
//! serves them (`/metrics`, `/healthz`). Every label has a bounded set of
//! values: targets come from the configuration, reasons are fixed.

use std::sync::{Arc, Mutex};

use horizon_shared::client::{ConnectFailure, ConnectionEvent, EventHook};
use horizon_shared::clock::unix_nanos_now;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::spool::Spool;

/// Label set `{target}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    /// The target's name.
    pub target: String,
}

/// Label set `{target, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScrapeResult {
    /// The target's name.
    pub target: String,
    /// `ok`, `timeout`, `connect`, `http_status`, `body`, `parse`.
    pub result: String,
}

/// Label set `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Why.
    pub reason: String,
}

/// Label set `{source}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `scrape` or `gpu`.
    pub source: String,
}

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Scrapes by target and result.
    pub scrapes: Family<ScrapeResult, Counter>,
    /// Scrape durations by target.
    pub scrape_duration: Family<TargetLabel, Histogram>,
    /// Samples in a target's last successful scrape.
    pub scrape_samples: Family<TargetLabel, Gauge>,
    /// Lines of a target's expositions that did not parse.
    pub scrape_parse_errors: Family<TargetLabel, Counter>,
    /// 1 if the target's last scrape succeeded.
    pub target_up: Family<TargetLabel, Gauge>,
    /// Points written to the spool, by source.
    pub points_collected: Family<SourceLabel, Counter>,
    /// Points dropped before the spool, by reason.
    pub points_dropped: Family<Reason, Counter>,
    /// Points handed to the relay connection.
    pub points_sent: Counter,
    /// Points the relay accepted.
    pub points_acked: Counter,
    /// Points the relay rejected, by reason.
    pub points_rejected: Family<Reason, Counter>,
    /// Batches acked.
    pub batches_acked: Counter,
    /// 1 while a connection to the relay is up, 0 from its loss until the
    /// next one is up.
    pub relay_connected: Gauge,
    /// Failed connection attempts, by reason ([`ConnectFailure`]).
    pub connect_errors: Family<Reason, Counter>,
    /// 1 if NVML is loaded and sees GPUs.
    pub gpu_up: Gauge,
}

#[derive(Debug)]
struct SpoolCollector(Arc<Mutex<Spool>>);

impl Collector for SpoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stats();
        let gauges = [
            (
                "spool_bytes",
                "Bytes of the spool's segment files on disk; acked records stay until their whole segment is acked and closed",
                st.bytes,
            ),
            (
                "spool_records",
                "Records in the spool's segment files on disk, acked ones included likewise",
                st.segment_records,
            ),
            (
                "backlog_batches",
                "Batches in the spool not yet acked by the relay",
                st.records,
            ),
            (
                "backlog_points",
                "Points in the spool not yet acked by the relay",
                st.unacked_points,
            ),
            (
                "backlog_bytes",
                "Bytes of the spool's records not yet acked by the relay (framing included)",
                st.unacked_bytes,
            ),
            (
                "spool_ack_watermark",
                "Highest sequence at or below which every batch is acked",
                st.watermark,
            ),
            (
                "spool_replayed_records",
                "Unacked batches found in the spool at start",
                st.replayed_records,
            ),
        ];
        for (name, help, v) in gauges {
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
                .encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        let age = st.oldest_unacked_unix_nano.map_or(0.0, |t| {
            unix_nanos_now().saturating_sub(t).max(0) as f64 / 1e9
        });
        ConstGauge::new(age).encode(encoder.encode_descriptor(
            "backlog_oldest_age_seconds",
            "Age of the oldest point not yet acked by the relay, from its timestamp; 0 when nothing waits",
            None,
            MetricType::Gauge,
        )?)?;
        let counters = [
            (
                "spool_dropped_records",
                "Unacked batches dropped because the spool was full",
                st.dropped_records,
            ),
            (
                "spool_dropped_points",
                "Points in those batches",
                st.dropped_points,
            ),
            (
                "spool_torn_records",
                "Torn or corrupt records cut off at start",
                st.torn_records,
            ),
        ];
        for (name, help, v) in counters {
            ConstCounter::new(v).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Registers every metric under the `horizon_agent` prefix.
    pub fn new(spool: Arc<Mutex<Spool>>) -> Self {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("horizon_agent");
        let m = Self {
            scrapes: Family::default(),
            scrape_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            scrape_samples: Family::default(),
            scrape_parse_errors: Family::default(),
            target_up: Family::default(),
            points_collected: Family::default(),
            points_dropped: Family::default(),
            points_sent: Counter::default(),
            points_acked: Counter::default(),
            points_rejected: Family::default(),
            batches_acked: Counter::default(),
            relay_connected: Gauge::default(),
            connect_errors: Family::default(),
            gpu_up: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "scrapes",
            "Scrapes by target and result (ok, timeout, connect, http_status, body, parse)",
            m.scrapes.clone(),
        );
        r.register(
            "scrape_duration_seconds",
            "Scrape durations by target",
            m.scrape_duration.clone(),
        );
        r.register(
            "scrape_samples",
            "Samples in the target's last successful scrape",
            m.scrape_samples.clone(),
        );
        r.register(
            "scrape_parse_errors",
            "Exposition lines that did not parse, by target",
            m.scrape_parse_errors.clone(),
        );
        r.register(
            "target_up",
            "1 if the target's last scrape succeeded",
            m.target_up.clone(),
        );
        r.register(
            "points_collected",
            "Points written to the spool, by source",
            m.points_collected.clone(),
        );
        r.register(
            "points_dropped",
            "Points dropped before the spool, by reason (placeholder, non_finite, invalid, denied)",
            m.points_dropped.clone(),
        );
        r.register(
            "points_sent",
            "Points handed to the relay connection (resends after a restart included)",
            m.points_sent.clone(),
        );
        r.register(
            "points_acked",
            "Points the relay accepted",
            m.points_acked.clone(),
        );
        r.register(
            "points_rejected",
            "Points the relay rejected, by reason",
            m.points_rejected.clone(),
        );
        r.register(
            "batches_acked",
            "Batches the relay acked",
            m.batches_acked.clone(),
        );
        r.register(
            "relay_connected",
            "1 while a connection to the relay is up, 0 from its loss until the next one",
            m.relay_connected.clone(),
        );
        r.register(
            "relay_connect_errors",
            "Failed connection attempts to the relay, by reason (timeout, refused, tls, dns, unreachable, closed, other)",
            m.connect_errors.clone(),
        );
        // Every reason from the start, so that the first error of a kind
        // is an increase an alert can see.
        for f in ConnectFailure::ALL {
            let _ = m.connect_errors.get_or_create(&Reason {
                reason: f.as_str().to_owned(),
            });
        }
        r.register(
            "gpu_up",
            "1 if NVML is loaded and sees at least one GPU",
            m.gpu_up.clone(),
        );
        r.register_collector(Box::new(SpoolCollector(spool)));
        Self {
            registry: root,
            ..m
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The hook through which the relay client keeps `relay_connected` and
    /// `relay_connect_errors_total` up to date.
    pub fn relay_events(self: &Arc<Self>) -> EventHook {
        let m = self.clone();
        EventHook::new(move |event| match event {
            ConnectionEvent::Connected => {
                m.relay_connected.set(1);
            }
            ConnectionEvent::Disconnected => {
                m.relay_connected.set(0);
            }
            ConnectionEvent::ConnectFailed(f) => {
                m.connect_errors
                    .get_or_create(&Reason {
                        reason: f.as_str().to_owned(),
                    })
                    .inc();
            }
        })
    }

    /// Counts dropped points.
    pub fn dropped(&self, reason: &str, n: u64) {
        if n > 0 {
            self.points_dropped
                .get_or_create(&Reason {
                    reason: reason.to_owned(),
                })
                .inc_by(n);
        }
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = horizon_shared::http::metrics_router(move || metrics.encode());
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
