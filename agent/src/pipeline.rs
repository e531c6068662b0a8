//! The agent's pipeline: sources append to the spool ([`SpoolSink`]), the
//! sender streams the spool to the relay ([`run_sender`]), and [`Agent`]
//! runs it all.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use horizon_shared::client::{Batch, Client, ClientConfig, ClientError, Point};
use horizon_shared::clock::unix_nanos_now;
use horizon_shared::devcerts::DevPki;
use horizon_shared::proto::RejectReason;
use horizon_shared::tls::TlsMaterial;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Settings, TlsSource};
use crate::gpu::{self, GpuSource};
use crate::metrics::{Metrics, Reason, SourceLabel};
use crate::record::{self, OwnedPoint};
use crate::spool::{Spool, SpoolError};

/// Where sources put points: the spool, in batches of at most
/// `max_batch_points`.
#[derive(Debug)]
pub struct SpoolSink {
    spool: Arc<Mutex<Spool>>,
    wake: Notify,
    max_batch_points: usize,
    metrics: Arc<Metrics>,
}

impl SpoolSink {
    /// A sink over `spool`.
    pub fn new(spool: Arc<Mutex<Spool>>, max_batch_points: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            spool,
            wake: Notify::new(),
            max_batch_points: max_batch_points.max(1),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends points; counts them as collected from `source` once they are
    /// in the spool (or as dropped with reason `spool_error`).
    pub fn push(&self, source: &str, points: &[OwnedPoint]) {
        for chunk in points.chunks(self.max_batch_points) {
            let res = self.lock().append(&record::encode(chunk));
            match res {
                Ok(_) => {
                    self.metrics
                        .points_collected
                        .get_or_create(&SourceLabel {
                            source: source.to_owned(),
                        })
                        .inc_by(chunk.len() as u64);
                }
                Err(e) => {
                    error!(error = %e, points = chunk.len(), "cannot append to the spool; points dropped");
                    self.metrics.dropped("spool_error", chunk.len() as u64);
                }
            }
        }
        self.wake.notify_one();
    }
}

/// Loads (or, for a development PKI, issues for `dev_node`) the node
/// certificate.
pub fn load_tls(src: &TlsSource, dev_node: &str) -> anyhow::Result<TlsMaterial> {
    use anyhow::Context;
    match src {
        TlsSource::Files { cert, key, ca } => TlsMaterial::load(cert, key, ca)
            .with_context(|| format!("loading the node certificate {}", cert.display())),
        TlsSource::Dev(dir) => {
            let pki = DevPki::at(dir);
            if !pki.ca_cert.exists() || !pki.ca_key.exists() {
                anyhow::bail!(
                    "no node certificate configured and no development CA in {} \
                     (start a development relay first, or set security.tls_*_path)",
                    dir.display()
                );
            }
            let (cert, key) = pki
                .client(dev_node)
                .with_context(|| format!("issuing a development certificate for {dev_node}"))?;
            TlsMaterial::load(&cert, &key, &pki.ca_cert)
                .context("loading the development certificate")
        }
    }
}

fn reason_name(code: i32) -> String {
    RejectReason::try_from(code).map_or_else(
        |_| format!("code_{code}"),
        |r| {
            r.as_str_name()
                .trim_start_matches("REJECT_REASON_")
                .to_ascii_lowercase()
        },
    )
}

/// Connects (retrying with backoff, forever, until `stop`), then streams the
/// spool to the relay: each record is sent as one batch and acked in the
/// spool when the relay acks it. The client reconnects and resends by
/// itself; what it had not sent when the agent stops is replayed from the
/// spool at the next start.
pub async fn run_sender(
    cfg: ClientConfig,
    sink: Arc<SpoolSink>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let max_backoff = cfg.max_backoff.max(Duration::from_secs(1));
    let mut backoff = Duration::from_millis(250);
    let mut logged = None::<String>;
    let client = loop {
        match Client::connect(cfg.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                metrics.connect_errors.inc();
                let msg = e.to_string();
                if logged.as_deref() != Some(&msg) {
                    warn!(relay = %cfg.addr, error = %msg, "cannot reach the relay; spooling and retrying");
                    logged = Some(msg);
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    };
    info!(relay = %cfg.addr, "connected to the relay");
    metrics.relay_connected.set(1);
    let client = Arc::new(client);
    loop {
        if stop.is_cancelled() {
            break;
        }
        let next = sink.lock().next_unsent();
        let rec = match next {
            Ok(Some(r)) => r,
            Ok(None) => {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = sink.wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            Err(e) => {
                error!(error = %e, "cannot read the spool; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let points = match record::decode(&rec.payload) {
            Ok(p) => p,
            Err(e) => {
                // CRC-checked, so only a bug could get here: skip the record.
                error!(seq = rec.seq, error = %e, "undecodable spool record skipped");
                let _ = sink.lock().ack(rec.seq);
                continue;
            }
        };
        let mut batch = Batch {
            points: Vec::with_capacity(points.len()),
        };
        for p in &points {
            let labels: Vec<(&str, &str)> = p
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match client.series(&p.metric, &labels) {
                Ok(id) => batch.points.push(Point::new(id, p.time_unix_nano, p.value)),
                Err(e) => {
                    warn!(metric = %p.metric, error = %e, "invalid series dropped");
                    metrics.dropped("invalid", 1);
                }
            }
        }
        let n = batch.points.len() as u64;
        let pending = tokio::select! {
            () = stop.cancelled() => break,
            r = client.send(batch) => r,
        };
        let pending = match pending {
            Ok(p) => p,
            Err(ClientError::Closed) => break,
            Err(e) => {
                error!(seq = rec.seq, error = %e, "batch refused by the client; it stays in the spool");
                continue;
            }
        };
        metrics.points_sent.inc_by(n);
        let (sink2, metrics2, seq) = (sink.clone(), metrics.clone(), rec.seq);
        tokio::spawn(async move {
            match pending.await {
                Ok(acked) => {
                    let a = acked.ack;
                    metrics2.batches_acked.inc();
                    metrics2.points_acked.inc_by(u64::from(a.accepted));
                    for r in &a.rejections {
                        let reason = reason_name(r.reason);
                        warn!(%reason, count = r.count, example = %r.message, "the relay rejected points");
                        metrics2
                            .points_rejected
                            .get_or_create(&Reason { reason })
                            .inc_by(u64::from(r.count));
                    }
                    if let Err(e) = sink2.lock().ack(seq) {
                        error!(seq, error = %e, "cannot record an ack in the spool");
                    }
                }
                Err(e) => {
                    tracing::debug!(seq, error = %e, "batch not acked; it stays in the spool")
                }
            }
        });
    }
    metrics.relay_connected.set(0);
    // Give batches in flight a moment to be acked, then close.
    if client.flush(Duration::from_secs(5)).await {
        info!("every sent batch acked");
    }
    if let Ok(c) = Arc::try_unwrap(client) {
        c.close().await;
    }
}

/// Polls a GPU source every `interval`, spooling `gpu_up` and the readings.
pub async fn run_gpu(
    mut source: Box<dyn GpuSource>,
    interval: Duration,
    sink: Arc<SpoolSink>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said = None::<String>;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snap = tokio::task::block_in_place(|| source.poll());
        match &snap {
            Ok(s) if !s.gpus.is_empty() => {
                metrics.gpu_up.set(1);
                said = None;
            }
            Ok(_) | Err(_) => {
                metrics.gpu_up.set(0);
                let why = snap
                    .as_ref()
                    .err()
                    .cloned()
                    .unwrap_or_else(|| "NVML sees no GPU".into());
                if said.as_deref() != Some(&why) {
                    warn!(reason = %why, "no GPU metrics (exporting gpu_up 0); other sources keep running");
                    said = Some(why);
                }
            }
        }
        let points = gpu::to_points(&snap, unix_nanos_now());
        sink.push("gpu", &points);
    }
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    /// The metrics endpoint's address, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    spool: Arc<Mutex<Spool>>,
}

impl Agent {
    /// Opens the spool, starts the metrics endpoint, the sources and the
    /// sender. `gpu` overrides the GPU source (tests); `None` opens NVML if
    /// enabled.
    pub async fn start(
        settings: Settings,
        tls: TlsMaterial,
        gpu: Option<Box<dyn GpuSource>>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let spool = Spool::open(&settings.spool_dir, settings.spool, record::points_of)
            .with_context(|| format!("opening the spool in {}", settings.spool_dir.display()))?;
        let st = spool.stats();
        info!(
            dir = %settings.spool_dir.display(),
            unacked_batches = st.replayed_records,
            bytes = st.bytes,
            torn = st.torn_records,
            "spool opened"
        );
        let spool = Arc::new(Mutex::new(spool));
        let metrics = Arc::new(Metrics::new(spool.clone()));
        let stop = CancellationToken::new();
        let metrics_addr = match settings.metrics_addr {
            Some(a) => Some(
                crate::metrics::serve(a, metrics.clone(), stop.clone())
                    .await
                    .with_context(|| format!("binding the metrics endpoint {a}"))?,
            ),
            None => None,
        };
        let sink = Arc::new(SpoolSink::new(
            spool.clone(),
            settings.max_batch_points,
            metrics.clone(),
        ));
        let mut tasks = Vec::new();
        let http = reqwest::Client::builder()
            .user_agent(concat!("telemetry-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        for t in settings.targets.clone() {
            info!(target = %t.name, url = %t.url, interval = ?t.interval, "scraping");
            tasks.push(tokio::spawn(crate::scrape::run_target(
                t,
                http.clone(),
                sink.clone(),
                metrics.clone(),
                stop.clone(),
            )));
        }
        let gpu = match gpu {
            Some(g) => Some(g),
            None if settings.gpu_enabled => Some(gpu::open_nvml()),
            None => None,
        };
        if let Some(g) = gpu {
            tasks.push(tokio::spawn(run_gpu(
                g,
                settings.gpu_interval,
                sink.clone(),
                metrics.clone(),
                stop.clone(),
            )));
        }
        // Interval fsyncs happen on append; this catches a quiet spool.
        let (s2, stop2) = (spool.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    () = stop2.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let r = s2
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .sync_if_due();
                if let Err(e) = r {
                    error!(error = %e, "spool sync failed");
                }
            }
        }));
        let mut cfg = ClientConfig::new(
            settings.relay_addr.clone(),
            settings.server_name.clone(),
            tls,
        );
        cfg.window = settings.window;
        cfg.max_batch_points = settings.max_batch_points;
        cfg.max_backoff = settings.max_backoff;
        cfg.liveness_timeout = settings.liveness_timeout;
        cfg.ack_timeout = settings.ack_timeout;
        tasks.push(tokio::spawn(run_sender(
            cfg,
            sink,
            metrics.clone(),
            stop.clone(),
        )));
        Ok(Self {
            metrics_addr,
            metrics,
            stop,
            tasks,
            spool,
        })
    }

    /// Stops the sources, gives the relay a few seconds to ack what is in
    /// flight, and syncs the spool (what is unacked is sent at next start).
    pub async fn stop(self) -> Result<(), SpoolError> {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.spool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sync()
    }
}
