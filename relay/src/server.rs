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
use crate::handshake::{Decision, Handshakes, Ticket, Waiting};
use crate::http::{self, Readiness};
use crate::ingest::{ByteBudget, IngestLimits};
use crate::log_limit::LogLimiter;
use crate::metrics::RelayMetrics;
use crate::shutdown::{Deadlines, Phase, Registration, Shutdown};
use crate::state::Shared;
use crate::tls_reload::{TlsReloader, load_tls};

/// Per-stream receive window (quinn's default), capped by the connection's.
const STREAM_RECEIVE_WINDOW: u64 = 1_250_000;

/// Datagrams kept for one Initial waiting for a handshake place, bytes.
const QUEUED_INITIAL_BYTES: u64 = 16 << 10;
/// The same, for all of them together.
const QUEUED_INITIAL_BYTES_TOTAL: u64 = 16 << 20;

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
    /// The QUIC socket's inode, to read its drops from `/proc/net/udp*`.
    udp_inode: Option<u64>,
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
        // What quinn keeps of the datagrams a client resends while its
        // Initial waits for a handshake place (crate::handshake): a few
        // Initials each, not quinn's 10 MiB (100 MiB in all).
        server
            .incoming_buffer_size(QUEUED_INITIAL_BYTES)
            .incoming_buffer_size_total(QUEUED_INITIAL_BYTES_TOTAL);
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
        let udp = horizon_shared::udp::bind(
            settings.server.listen_addr,
            settings.server.udp_receive_buffer,
        )
        .map_err(bind_err)?;
        if udp.capped() {
            warn!(
                asked = udp.asked,
                got = udp.receive_buffer,
                "the kernel capped the QUIC socket's receive buffer (server.udp_receive_buffer_bytes) at net.core.rmem_max: in a connect storm datagrams drop (horizon_relay_udp_receive_drops_total) and agents take the relay for silent; raise it: sysctl -w net.core.rmem_max={}",
                udp.asked
            );
        }
        let (udp_inode, udp_buffer) = (udp.inode, udp.receive_buffer);
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(server),
            udp.socket,
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
        metrics
            .connections
            .udp_receive_buffer
            .set(i64::try_from(udp_buffer).unwrap_or(i64::MAX));
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
            metrics.connections.handshake_gauges(),
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
            udp_inode,
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
            udp_inode,
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
                udp_inode,
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
        Decision::Ignore => {
            shared.metrics.connections.handshake_refused("queue_full");
            incoming.ignore();
        }
        Decision::Start(ticket) => serve(incoming, shared, coordinator, Place::Taken(ticket)),
        Decision::Wait(waiting) => serve(incoming, shared, coordinator, Place::Queued(waiting)),
    }
}

/// A handshake's place in `server.max_handshakes_in_progress`.
enum Place {
    /// Taken.
    Taken(Ticket),
    /// To come from the queue, if within its wait.
    Queued(Waiting),
}

/// Runs a connection's handshake and the connection, once the handshake
/// has its place (else the Initial is dropped unanswered: the client's
/// next resend comes back).
fn serve(incoming: quinn::Incoming, shared: &Arc<Shared>, coordinator: &Shutdown, place: Place) {
    let remote = incoming.remote_address();
    let span = info_span!("conn", %remote);
    let registration: Registration =
        coordinator.register(Phase::Connections, format!("connection from {remote}"));
    let shared = shared.clone();
    tokio::spawn(
        async move {
            let ticket = match place {
                Place::Taken(t) => Some(t),
                Place::Queued(mut w) => tokio::select! {
                    t = w.ticket() => t,
                    () = shared.drain.cancelled() => None,
                },
            };
            match ticket {
                Some(ticket) => connection::handle(incoming, shared, ticket).await,
                None => {
                    let reason = if shared.drain.is_cancelled() {
                        "shutting_down"
                    } else {
                        "queue_timeout"
                    };
                    shared.metrics.connections.handshake_refused(reason);
                    incoming.ignore();
                }
            }
            drop(registration);
        }
        .instrument(span),
    );
}

/// Shows how many connections the QUIC endpoint holds state for, so that
/// half-open handshakes dropped by the relay are seen to leave it; and,
/// every second, the datagrams the kernel dropped at the endpoint's socket.
async fn watch_endpoint(
    endpoint: quinn::Endpoint,
    udp_inode: Option<u64>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let drops_log = LogLimiter::new(Duration::from_secs(10));
    let mut drops = udp_inode.and_then(horizon_shared::udp::receive_drops);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let open = i64::try_from(endpoint.open_connections()).unwrap_or(i64::MAX);
                shared.metrics.connections.quic.set(open);
                ticks += 1;
                if ticks.is_multiple_of(4) {
                    count_drops(&shared, udp_inode, &mut drops, &drops_log);
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// Adds the kernel's new drops at the QUIC socket to
/// `udp_receive_drops_total`, and says so in the log (every 10 s at most).
fn count_drops(shared: &Shared, inode: Option<u64>, last: &mut Option<u64>, log: &LogLimiter) {
    let (Some(inode), Some(before)) = (inode, *last) else {
        return;
    };
    let Some(now) = horizon_shared::udp::receive_drops(inode) else {
        return;
    };
    *last = Some(now);
    let new = now.saturating_sub(before);
    if new == 0 {
        return;
    }
    shared.metrics.connections.udp_receive_drops.inc_by(new);
    if let Some(suppressed) = log.allow() {
        warn!(
            dropped = new,
            receive_buffer = shared.metrics.connections.udp_receive_buffer.get(),
            suppressed,
            "the kernel dropped datagrams at the QUIC socket, its receive buffer full: agents see lost packets; raise server.udp_receive_buffer_bytes (and net.core.rmem_max), or add relays"
        );
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
