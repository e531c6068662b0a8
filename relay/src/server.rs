//! The relay server: binds the QUIC endpoint and the metrics endpoint, runs
//! the accept loop, and shuts down through the [`Shutdown`] coordinator in
//! its documented order (stop accepting, tell agents to go away and finish
//! in-flight batches, flush the sinks, close).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use horizon_shared::proto::error_code;
use horizon_shared::tls::{client_verifier, quic_server_config_with};
use object_store::ObjectStore;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::budget::Budgets;
use crate::config::Settings;
use crate::connection;
use crate::error::RelayError;
use crate::handshake::{Decision, Handshakes};
use crate::http::{self, Readiness};
use crate::ingest::{ByteBudget, IngestLimits};
use crate::log_limit::LogLimiter;
use crate::metrics::RelayMetrics;
use crate::shutdown::{Deadlines, Phase, Registration, Shutdown};
use crate::state::Shared;
use crate::tls_reload::{TlsReloader, load_tls};

/// Per-stream receive window (quinn's default), capped by the connection's.
const STREAM_RECEIVE_WINDOW: u64 = 1_250_000;

/// A receive window as a QUIC varint (validated to at most 256 MiB).
fn receive_window(bytes: u64) -> quinn::VarInt {
    quinn::VarInt::from_u64(bytes).unwrap_or(quinn::VarInt::MAX)
}

/// A bound relay, ready to [`run`](Relay::run).
#[derive(Debug)]
pub struct Relay {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    metrics_listener: Option<tokio::net::TcpListener>,
    ready: Arc<Readiness>,
    transport: Arc<quinn::TransportConfig>,
    shutdown: Shutdown,
}

impl Relay {
    /// Loads certificates, builds the configured object store and binds the
    /// QUIC and metrics sockets.
    pub async fn bind(settings: Settings) -> Result<Self, RelayError> {
        let store = settings.parquet.location.build()?;
        Self::bind_with_store(settings, store).await
    }

    /// Like [`bind`](Self::bind), but the Parquet sink writes to `store`
    /// instead of the configured location (`parquet.raw_prefix` still
    /// applies), e.g. an in-memory store.
    pub async fn bind_with_store(
        settings: Settings,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Self, RelayError> {
        let tls = load_tls(&settings.security.tls, &settings.security.crl)?;
        let mut server = quic_server_config_with(&tls, client_verifier(&tls)?)?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(settings.server.idle_timeout)
                    .map_err(RelayError::Transport)?,
            ))
            .keep_alive_interval(Some(settings.server.keep_alive))
            .max_concurrent_bidi_streams(settings.server.max_streams_per_connection.into())
            .max_concurrent_uni_streams(0u32.into())
            // What the transport buffers for a connection whose streams are
            // not being read: its receive window, not quinn's unbounded default.
            .receive_window(receive_window(settings.server.receive_window))
            .stream_receive_window(receive_window(
                settings.server.receive_window.min(STREAM_RECEIVE_WINDOW),
            ));
        let transport = Arc::new(transport);
        server.transport_config(transport.clone());
        let bind_err = |source| RelayError::Bind {
            addr: settings.server.listen_addr,
            source,
        };
        let mut endpoint_config = quinn::EndpointConfig::default();
        if let Some((server_id, cid_len)) = settings.server.quic_lb {
            endpoint_config.cid_generator(move || {
                Box::new(crate::quic_lb::QuicLbCidGenerator::new(server_id, cid_len))
            });
            info!(%server_id, cid_len, "connection IDs carry this relay's QUIC-LB server ID");
        }
        let socket = std::net::UdpSocket::bind(settings.server.listen_addr).map_err(bind_err)?;
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;

        let metrics_listener = match settings.observability.metrics_addr {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| RelayError::Bind { addr, source })?,
            ),
            None => None,
        };
        let budgets = Arc::new(Budgets::new(settings.budgets.clone()));
        let metrics = Arc::new(RelayMetrics::new(budgets.clone(), &settings));
        metrics.tls.set_crls(&tls.revocation);
        let limits = IngestLimits {
            max_batch_size: settings.limits.max_batch_size,
            series: settings.limits.series_limits,
            time_window: settings.limits.time_window,
        };
        info!(
            store = %settings.parquet.location,
            raw_prefix = %settings.parquet.raw_prefix,
            acks = if settings.durable_acks { "durable" } else { "received" },
            influxdb = settings.influxdb.as_ref().map_or("off", |i| i.url.as_str()),
            "sinks configured"
        );
        let shutdown = Shutdown::new();
        let pipeline =
            crate::sink::Pipeline::start(&settings, store, metrics.sink.clone(), &shutdown)?;
        let handshakes = Handshakes::new(
            settings.server.max_handshakes_in_progress,
            settings.server.handshake_retry_per_sec,
            metrics.connections.handshakes_in_progress.clone(),
            metrics.connections.handshake_rate.clone(),
        );
        let connection_slots = Arc::new(Semaphore::new(settings.server.max_connections));
        let dictionary_bytes = Arc::new(ByteBudget::with_gauge(
            settings.limits.dictionary.total,
            metrics.streams.dictionary_bytes.clone(),
        ));
        let frame_bytes = Arc::new(Semaphore::new(settings.limits.frame_buffer.total));
        let shared = Arc::new(Shared {
            frame_bytes,
            handshakes,
            connection_slots,
            dictionary_bytes,
            open: crate::open::OpenConnections::new(
                settings.server.max_connections_per_node,
                settings.limits.frame_buffer.per_node,
            ),
            settings,
            limits,
            budgets,
            metrics,
            drain: shutdown.signal(Phase::Connections),
            pipeline,
            handshake_log: LogLimiter::new(Duration::from_secs(10)),
            refused_log: LogLimiter::new(Duration::from_secs(10)),
            replaced_log: LogLimiter::new(Duration::from_secs(10)),
        });
        let ready = Arc::new(Readiness::new(
            shared.pipeline.store_health(),
            shared.settings.observability.unready_after_store_failure,
        ));
        Ok(Self {
            endpoint,
            shared,
            metrics_listener,
            ready,
            transport,
            shutdown,
        })
    }

    /// The QUIC address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or(self.shared.settings.server.listen_addr)
    }

    /// The metrics endpoint's address, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// A handle that reloads the TLS material (SIGHUP).
    pub fn tls_reloader(&self) -> TlsReloader {
        TlsReloader {
            endpoint: self.endpoint.clone(),
            source: self.shared.settings.security.tls.clone(),
            crl: self.shared.settings.security.crl.clone(),
            transport: self.transport.clone(),
            shared: self.shared.clone(),
        }
    }

    /// The budgets, to reconfigure them on reload.
    pub fn budgets(&self) -> Arc<Budgets> {
        self.shared.budgets.clone()
    }

    /// The metrics, for embedding and tests.
    pub fn metrics(&self) -> Arc<RelayMetrics> {
        self.shared.metrics.clone()
    }

    /// Serves until `shutdown` completes, then shuts down in order (see
    /// [`crate::shutdown`]): `/readyz` fails and no new connection is
    /// accepted; every stream is told to go away and given
    /// `server.drain_grace_secs` to finish its in-flight batches; the sinks
    /// get `server.drain_flush_secs` to store what they hold; the endpoint
    /// and the HTTP server close. Returns within `drain_grace + drain_flush
    /// + 3 s` of `shutdown` completing.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
        let Self {
            endpoint,
            shared,
            metrics_listener,
            ready,
            shutdown: coordinator,
            ..
        } = self;
        if let Some(listener) = metrics_listener {
            let (m, r, stop) = (
                shared.metrics.clone(),
                ready.clone(),
                coordinator.signal(Phase::Exit),
            );
            coordinator.spawn(Phase::Exit, "HTTP endpoint", async move {
                if let Err(e) = http::serve(listener, m, r, stop).await {
                    warn!(error = %e, "metrics endpoint failed");
                }
            });
        }
        coordinator.spawn(
            Phase::Accept,
            "budget sweeper",
            sweep_budgets(shared.clone(), coordinator.signal(Phase::Accept)),
        );
        coordinator.spawn(
            Phase::Accept,
            "endpoint watcher",
            watch_endpoint(
                endpoint.clone(),
                shared.clone(),
                coordinator.signal(Phase::Accept),
            ),
        );
        {
            let (endpoint, exit) = (endpoint.clone(), coordinator.signal(Phase::Exit));
            coordinator.spawn(Phase::Exit, "QUIC endpoint", async move {
                exit.cancelled().await;
                endpoint.close(error_code::SHUTTING_DOWN.into(), b"relay shutting down");
                endpoint.wait_idle().await;
            });
        }
        let accepting = coordinator.register(Phase::Accept, "accept loop");
        tokio::pin!(shutdown);
        loop {
            let incoming = tokio::select! {
                () = &mut shutdown => break,
                i = endpoint.accept() => match i {
                    Some(i) => i,
                    None => break,
                },
            };
            admit(incoming, &shared, &coordinator);
        }

        info!("shutting down: refusing new connections, draining streams");
        ready.drain();
        drop(accepting);
        let deadlines = Deadlines::from_settings(&shared.settings);
        let report = coordinator.run(|phase| deadlines.of(phase)).await;
        if report
            .overran
            .iter()
            .any(|(phase, _)| *phase == Phase::Connections)
        {
            warn!(
                open = shared.metrics.connections.active.get(),
                "drain grace expired; closing remaining connections"
            );
        }
        info!("relay stopped");
        Ok(())
    }
}

/// Decides what to do with a new Initial: refuse it while every
/// authenticated connection slot is taken (before any TLS work), else start
/// its handshake within `server.max_handshakes_in_progress` (see
/// [`crate::handshake`] for what happens when that bound is full).
fn admit(incoming: quinn::Incoming, shared: &Arc<Shared>, coordinator: &Shutdown) {
    let remote = incoming.remote_address();
    if shared.connection_slots.available_permits() == 0 {
        shared.refuse_at_limit(remote);
        incoming.refuse();
        return;
    }
    let (decision, evicted) = shared
        .handshakes
        .admit(incoming.remote_address_validated(), incoming.may_retry());
    if evicted {
        shared.metrics.connections.handshake_refused("evicted");
    }
    match decision {
        Decision::Retry => match incoming.retry() {
            Ok(()) => {
                shared.metrics.connections.handshake_retries.inc();
            }
            Err(e) => {
                shared.metrics.connections.handshake_refused("retry_failed");
                e.into_incoming().refuse();
            }
        },
        Decision::Start(ticket) => {
            let span = info_span!("conn", %remote);
            let registration: Registration =
                coordinator.register(Phase::Connections, format!("connection from {remote}"));
            let shared = shared.clone();
            tokio::spawn(
                async move {
                    connection::handle(incoming, shared, ticket).await;
                    drop(registration);
                }
                .instrument(span),
            );
        }
    }
}

/// Shows how many connections the QUIC endpoint holds state for, so that
/// half-open handshakes dropped by the relay are seen to leave it.
async fn watch_endpoint(endpoint: quinn::Endpoint, shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let open = i64::try_from(endpoint.open_connections()).unwrap_or(i64::MAX);
                shared.metrics.connections.quic.set(open);
            }
            () = stop.cancelled() => return,
        }
    }
}

/// Expires quiet series every quarter TTL (at most every 30 s).
async fn sweep_budgets(shared: Arc<Shared>, stop: CancellationToken) {
    let period = (shared.settings.budgets.series_ttl / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let expired = shared.budgets.sweep(shared.budgets.now());
                if expired > 0 {
                    tracing::debug!(expired, live = shared.budgets.total(), "expired quiet series");
                }
            }
            () = stop.cancelled() => return,
        }
    }
}
