//! The running agent: sources (scrapers, the GPU poller) append to the
//! spool through the [`SpoolSink`], the sender streams the spool to the
//! relay, a syncer fsyncs a quiet spool, and the metrics endpoint serves
//! the agent's own metrics. [`Agent`] starts them, each registered by name
//! with the shutdown coordinator in the phase where it stops
//! ([`crate::shutdown`]): sources, then the sender, then the spool, then
//! the metrics endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use horizon_shared::client::ClientConfig;
use horizon_shared::tls::TlsMaterial;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::gpu::{self, GpuSource};
use crate::metrics::Metrics;
use crate::sender::run_sender;
use crate::shutdown::{Deadlines, Phase, Shutdown};
use crate::sink::SpoolSink;
use crate::spool::{Spool, SpoolError};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The spool could not be opened.
    #[error("opening the spool in {}", dir.display())]
    Spool {
        /// The spool's directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: SpoolError,
    },
    /// The metrics endpoint's address could not be bound.
    #[error("binding the metrics endpoint {addr}")]
    MetricsEndpoint {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The scrapers' HTTP client could not be built.
    #[error("building the HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    /// The metrics endpoint's address, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    shutdown: Shutdown,
    deadlines: Deadlines,
    spool: Arc<Mutex<Spool>>,
    /// The spool's last sync, done by the syncer when its phase comes.
    synced: oneshot::Receiver<Result<(), SpoolError>>,
}

impl Agent {
    /// Opens the spool, starts the metrics endpoint, the sources and the
    /// sender. `gpu` overrides the GPU source (tests); `None` opens NVML if
    /// enabled.
    pub async fn start(
        settings: Settings,
        tls: TlsMaterial,
        gpu: Option<Box<dyn GpuSource>>,
    ) -> Result<Self, StartError> {
        for l in &settings.lowered {
            warn!("{l}");
        }
        let spool = Spool::open(
            &settings.spool.dir,
            settings.spool.options,
            crate::sink::summarize,
        )
        .map_err(|source| StartError::Spool {
            dir: settings.spool.dir.clone(),
            source,
        })?;
        let st = spool.stats();
        info!(
            dir = %settings.spool.dir.display(),
            unacked_batches = st.replayed_records,
            bytes = st.bytes,
            torn = st.torn_records,
            "spool opened"
        );
        let spool = Arc::new(Mutex::new(spool));
        let metrics = Arc::new(Metrics::new(spool.clone()));
        let shutdown = Shutdown::new();
        let metrics_addr = match settings.observability.metrics_addr {
            Some(addr) => Some(serve_metrics(addr, &metrics, &shutdown).await?),
            None => None,
        };
        let sink = Arc::new(SpoolSink::new(
            spool.clone(),
            settings.relay.max_batch_points,
            metrics.clone(),
        ));
        let http = crate::scrape::http_client().map_err(StartError::HttpClient)?;
        for t in settings.targets.clone() {
            info!(target = %t.name, url = %t.url, interval = ?t.interval, "scraping");
            let name = format!("scraper of {}", t.name);
            shutdown.spawn(
                Phase::Sources,
                name,
                crate::scrape::run_target(
                    t,
                    http.clone(),
                    sink.clone(),
                    metrics.clone(),
                    shutdown.signal(Phase::Sources),
                ),
            );
        }
        let gpu = match gpu {
            Some(g) => Some(g),
            None if settings.gpu.enabled => Some(gpu::open_nvml()),
            None => None,
        };
        if let Some(g) = gpu {
            shutdown.spawn(
                Phase::Sources,
                "GPU poller",
                gpu::poll::run_gpu(
                    g,
                    settings.gpu.clone(),
                    sink.clone(),
                    metrics.clone(),
                    shutdown.signal(Phase::Sources),
                ),
            );
        }
        let synced = spawn_syncer(spool.clone(), &shutdown);
        let mut cfg = ClientConfig::new(
            settings.relay.addr.clone(),
            settings.relay.server_name.clone(),
            tls,
        );
        cfg.window = settings.relay.window;
        cfg.max_batch_points = settings.relay.max_batch_points;
        cfg.max_backoff = settings.relay.max_backoff;
        cfg.liveness_timeout = settings.relay.liveness_timeout;
        cfg.ack_timeout = settings.relay.ack_timeout;
        cfg.events = Some(metrics.relay_events());
        shutdown.spawn(
            Phase::Sender,
            "sender",
            run_sender(
                cfg,
                sink,
                metrics.clone(),
                shutdown.signal(Phase::Sender),
                Deadlines::ACK_FLUSH,
            ),
        );
        Ok(Self {
            metrics_addr,
            metrics,
            deadlines: Deadlines::from_settings(&settings),
            shutdown,
            spool,
            synced,
        })
    }

    /// Shuts down in order ([`crate::shutdown`]): stops the sources, gives
    /// the relay a few seconds to ack what is in flight, syncs the spool
    /// (what is unacked is sent at next start), stops the metrics endpoint.
    pub async fn stop(self) -> Result<(), SpoolError> {
        let deadlines = self.deadlines;
        let report = self.shutdown.run(|phase| deadlines.of(phase)).await;
        if !report.clean() {
            warn!(overran = ?report.overran, "agent shutdown overran a deadline");
        }
        match self.synced.await {
            Ok(synced) => synced,
            // The syncer was aborted at its deadline: try once more.
            Err(_) => lock(&self.spool).sync(),
        }
    }
}

/// Binds the metrics endpoint and serves it until the exit phase.
async fn serve_metrics(
    addr: SocketAddr,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> Result<SocketAddr, StartError> {
    let bind_err = |source| StartError::MetricsEndpoint { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    let (metrics, stop) = (metrics.clone(), shutdown.signal(Phase::Exit));
    shutdown.spawn(Phase::Exit, "metrics endpoint", async move {
        if let Err(e) = crate::metrics::serve(listener, metrics, stop).await {
            warn!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(bound)
}

/// Fsyncs a quiet spool (interval fsyncs happen on append) until the spool
/// phase, then syncs it one last time; the result arrives on the receiver.
fn spawn_syncer(
    spool: Arc<Mutex<Spool>>,
    shutdown: &Shutdown,
) -> oneshot::Receiver<Result<(), SpoolError>> {
    let (tx, rx) = oneshot::channel();
    let stop = shutdown.signal(Phase::Spool);
    shutdown.spawn(Phase::Spool, "spool sync", async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = lock(&spool).sync_if_due() {
                error!(error = %e, "spool sync failed");
            }
        }
        let _ = tx.send(lock(&spool).sync());
    });
    rx
}

fn lock(spool: &Mutex<Spool>) -> MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(PoisonError::into_inner)
}
