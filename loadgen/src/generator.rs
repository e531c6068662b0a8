//! The load generator behind `telemetry-loadgen`: simulates nodes, each
//! with its own client certificate and connection, sending series at a
//! target point rate, and measures acks.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::report::{Failover, Latency, Report, percentiles};
use hdrhistogram::Histogram;
use horizon_shared::client::{Batch, Client, ClientConfig, Point, SeriesId};
use horizon_shared::clock::unix_nanos_now;
use horizon_shared::devcerts::DevPki;
use horizon_shared::proto::RejectReason;
use horizon_shared::tls::TlsMaterial;
use tokio::sync::mpsc;

/// Where the simulated nodes' certificates come from.
#[derive(Debug, Clone)]
pub enum Certs {
    /// Issue one certificate per node from the development CA in this directory.
    Dev(PathBuf),
    /// Every simulated node uses these files (so they share one identity).
    Files {
        /// Client certificate.
        cert: PathBuf,
        /// Client key.
        key: PathBuf,
        /// CA of the relay's certificate.
        ca: PathBuf,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Relay or load balancer address.
    pub addr: String,
    /// Name on the relay's certificate.
    pub server_name: String,
    /// Certificates.
    pub certs: Certs,
    /// Simulated nodes (one connection each).
    pub nodes: usize,
    /// Series per node.
    pub series: usize,
    /// Target points per second, all nodes together.
    pub rate: u64,
    /// How long to send.
    pub duration: Duration,
    /// Most points per batch.
    pub batch_points: usize,
    /// Unacked batches per node.
    pub window: usize,
    /// Node names are this prefix plus an index.
    pub node_prefix: String,
    /// This many of the nodes spray new series (a label with a fresh value
    /// for every point), to exercise cardinality budgets.
    pub spray_nodes: usize,
    /// Distinct series a spraying node cycles through.
    pub spray_series: usize,
    /// How long to wait for outstanding acks at the end.
    pub flush_timeout: Duration,
    /// UDP endpoints the nodes share, node `i` on endpoint `i % endpoints`;
    /// 0: each node opens its own, as an agent does (and takes a fresh
    /// port at each reconnect, which a balancer hashing ports needs).
    pub endpoints: usize,
}

struct Tally {
    report: Report,
    latency_us: Histogram<u64>,
    /// Each node's longest ack gap, ms: nodes that reconnected, and the others.
    gaps_moved: Vec<f64>,
    gaps_stayed: Vec<f64>,
}

impl Tally {
    fn record(&mut self, acked: &horizon_shared::client::Acked) {
        let r = &mut self.report;
        r.batches_acked += 1;
        r.points_acked += u64::from(acked.ack.accepted);
        let t = &mut r.throttled;
        if acked.ack.queue_wait_ms > 0 {
            t.sink_queue_batches += 1;
            t.sink_queue_ms += u64::from(acked.ack.queue_wait_ms);
        }
        if acked.ack.in_flight_wait_ms > 0 {
            t.in_flight_batches += 1;
            t.in_flight_ms += u64::from(acked.ack.in_flight_wait_ms);
        }
        for rej in &acked.ack.rejections {
            let c = u64::from(rej.count);
            match RejectReason::try_from(rej.reason) {
                Ok(RejectReason::Cardinality) => r.points_rejected.cardinality += c,
                Ok(RejectReason::TooLarge) => r.points_rejected.too_large += c,
                Ok(RejectReason::Overloaded) => r.points_rejected.overloaded += c,
                _ => r.points_rejected.invalid += c,
            }
        }
        let us = u64::try_from(acked.latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = self.latency_us.record(us.min(self.latency_us.high()));
    }
}

fn material(certs: &Certs, node: &str) -> anyhow::Result<TlsMaterial> {
    Ok(match certs {
        Certs::Files { cert, key, ca } => TlsMaterial::load(cert, key, ca)?,
        Certs::Dev(dir) => {
            let pki = DevPki::at(dir);
            if !pki.ca_cert.exists() {
                anyhow::bail!(
                    "no development CA in {} (start telemetry-relay with no config first, or pass --cert/--key/--ca)",
                    dir.display()
                );
            }
            let (cert, key) = pki.client(node)?;
            TlsMaterial::load(&cert, &key, &pki.ca_cert)?
        }
    })
}

/// `SO_RCVBUF` of an endpoint the nodes share, bytes (the relay's default).
const SHARED_RECEIVE_BUFFER: usize = 8 << 20;

/// Runs the load and returns the report.
pub async fn run(spec: LoadSpec) -> anyhow::Result<Report> {
    anyhow::ensure!(
        spec.nodes > 0 && spec.series > 0,
        "--nodes and --series must be at least 1"
    );
    anyhow::ensure!(spec.batch_points > 0, "--batch-points must be at least 1");
    let tally = Arc::new(Mutex::new(Tally {
        report: Report::default(),
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        gaps_moved: Vec::new(),
        gaps_stayed: Vec::new(),
    }));
    let per_node_rate = spec.rate as f64 / spec.nodes as f64;
    // Each endpoint holds quinn's receive buffer (about 3 MiB): ten
    // thousand nodes with one each spend more time zeroing memory than
    // sending. A shared endpoint receives for hundreds of nodes: its
    // socket gets a receive buffer to match, so that a burst of acks is
    // not dropped by the kernel and taken for a silent relay.
    let endpoints = (0..spec.endpoints)
        .map(|_| horizon_shared::client::open_endpoint_with(SHARED_RECEIVE_BUFFER))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(spec.nodes);
    for i in 0..spec.nodes {
        let name = format!("{}{i}", spec.node_prefix);
        let tls = material(&spec.certs, &name)?;
        let mut cfg = ClientConfig::new(spec.addr.clone(), spec.server_name.clone(), tls);
        cfg.window = spec.window;
        cfg.max_batch_points = spec.batch_points;
        cfg.endpoint = (!endpoints.is_empty()).then(|| endpoints[i % endpoints.len()].clone());
        let spray = i < spec.spray_nodes;
        tasks.push(tokio::spawn(node_task(
            spec.clone(),
            cfg,
            per_node_rate,
            spray,
            i,
            tally.clone(),
        )));
    }
    let mut nodes_failed = 0;
    for t in tasks {
        match t.await? {
            Ok(()) => {}
            Err(e) => {
                nodes_failed += 1;
                tracing::warn!(error = %format!("{e:#}"), "node failed");
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut t = tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let h = &t.latency_us;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let latency = if h.is_empty() {
        Latency::default()
    } else {
        Latency {
            p50: ms(0.5),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
        }
    };
    let failover = Failover {
        nodes_moved: t.gaps_moved.len() as u64,
        moved_gap_ms: percentiles(&mut t.gaps_moved),
        stayed_gap_ms: percentiles(&mut t.gaps_stayed),
    };
    let r = &mut t.report;
    r.failover = failover;
    r.ack_latency_ms = latency;
    r.nodes_failed = nodes_failed;
    r.elapsed_secs = elapsed;
    let rej = &r.points_rejected;
    let answered = r.points_acked + rej.cardinality + rej.invalid + rej.too_large + rej.overloaded;
    r.points_unacked = r.points_sent.saturating_sub(answered);
    r.points_per_sec = if elapsed > 0.0 {
        answered as f64 / elapsed
    } else {
        0.0
    };
    Ok(r.clone())
}

async fn node_task(
    spec: LoadSpec,
    cfg: ClientConfig,
    rate: f64,
    spray: bool,
    index: usize,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<()> {
    // Like an agent, retry the first connection (a thousand nodes starting
    // at once can outrun the relay's handshakes), for at most the run's
    // duration.
    let deadline = Instant::now() + spec.duration;
    let mut failures = 0u32;
    let client = loop {
        match Client::connect(cfg.clone()).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                failures += 1;
                tracing::debug!(node = index, error = %e, failures, "first connection failed; retrying");
                let pause = Duration::from_millis(250)
                    .saturating_mul(1 << failures.min(4))
                    .min(Duration::from_secs(5));
                tokio::time::sleep(horizon_shared::jitter::spread(pause, 0.5)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let metrics = [
        "gpu_utilization_percent",
        "gpu_memory_used_bytes",
        "gpu_temperature_celsius",
        "gpu_power_watts",
    ];
    let series: Vec<SeriesId> = (0..spec.series)
        .map(|s| {
            let gpu = (s / metrics.len()).to_string();
            client.series(
                metrics[s % metrics.len()],
                &[("gpu", &gpu), ("model", "H100")],
            )
        })
        .collect::<Result<_, _>>()?;
    let spray_series = spec.spray_series.max(1);

    // Acks are awaited in send order by a companion task.
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<horizon_shared::client::PendingAck>();
    let t2 = tally.clone();
    // It also measures the node's longest time between two acks.
    let acker = tokio::spawn(async move {
        let mut last: Option<Instant> = None;
        let mut longest = Duration::ZERO;
        let mut lost = false;
        while let Some(p) = ack_rx.recv().await {
            match p.await {
                Ok(a) => {
                    let now = Instant::now();
                    if let Some(l) = last {
                        longest = longest.max(now - l);
                    }
                    last = Some(now);
                    t2.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .record(&a);
                }
                Err(_) => lost = true,
            }
        }
        // A node whose last batches were never acked went without acks
        // from its last one to the end of the run.
        if lost && let Some(l) = last {
            longest = longest.max(l.elapsed());
        }
        longest
    });

    // Like an agent, send about one scrape of the node's series per tick
    // (20 ms to 1 s), and stagger nodes so they do not send in lockstep.
    let tick = Duration::from_secs_f64((spec.series as f64 / rate.max(1.0)).clamp(0.02, 1.0));
    tokio::time::sleep(tick.mul_f64((index % 50) as f64 / 50.0)).await;
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut cursor: usize = 0;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while start.elapsed() < spec.duration {
        interval.tick().await;
        let due = (rate * start.elapsed().as_secs_f64()) as u64;
        let mut todo = due.saturating_sub(sent);
        let now = unix_nanos_now();
        while todo > 0 {
            let n = usize::try_from(todo)
                .unwrap_or(usize::MAX)
                .min(spec.batch_points);
            let mut points = Vec::with_capacity(n);
            for _ in 0..n {
                let (sid, lap) = if spray {
                    let k = cursor % spray_series;
                    let id = client.series("loadgen_spray", &[("job_id", &k.to_string())])?;
                    (id, cursor / spray_series)
                } else {
                    (series[cursor % series.len()], cursor / series.len())
                };
                // Distinct timestamps per lap keep every (series, time) unique.
                points.push(Point::new(
                    sid,
                    now + lap as i64 % 1_000_000,
                    (cursor % 100) as f64,
                ));
                cursor += 1;
            }
            let pending = client.send(Batch { points }).await?;
            let _ = ack_tx.send(pending);
            sent += n as u64;
            todo -= n as u64;
        }
    }
    tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .report
        .points_sent += sent;
    client.flush(spec.flush_timeout).await;
    drop(ack_tx);
    let stats = client.stats();
    {
        let mut t = tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let errors = u64::from(failures) + stats.connection_errors;
        t.report.connection_errors += errors;
        t.report.connections_lost += stats.connections_lost;
        t.report.connections_lost_to_silence += stats.silences;
        t.report.connections_unconfirmed += stats.unconfirmed;
        t.report.nodes_with_connection_errors += u64::from(errors > 0);
        t.report.nodes_that_lost_a_connection += u64::from(stats.connections_lost > 0);
        t.report.resends += stats.resends;
    }
    client.close().await;
    let longest = acker.await.unwrap_or_default().as_secs_f64() * 1000.0;
    let mut t = tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if stats.connects > 1 {
        t.gaps_moved.push(longest);
    } else {
        t.gaps_stayed.push(longest);
    }
    Ok(())
}
