//! The relay's HTTP endpoint: `/metrics` (OpenMetrics text) and `/healthz`
//! (the process is up), as every Horizon process serves them
//! ([`horizon_shared::http`]), and `/readyz` ([`Readiness`]: not while
//! draining, nor while object-store writes keep failing).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::RelayMetrics;
use crate::sink::StoreHealth;

/// What `/readyz` reports: not ready while draining, or while object-store
/// writes have been failing for longer than the configured threshold.
#[derive(Debug)]
pub struct Readiness {
    draining: AtomicBool,
    store: Arc<StoreHealth>,
    threshold: Option<std::time::Duration>,
}

impl Readiness {
    /// Ready until drained; unready after `threshold` of store failures.
    pub fn new(store: Arc<StoreHealth>, threshold: Option<std::time::Duration>) -> Self {
        Self {
            draining: AtomicBool::new(false),
            store,
            threshold,
        }
    }

    /// Marks the relay as draining.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), NotReady> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(NotReady::Draining);
        }
        if let (Some(limit), Some(failing)) = (self.threshold, self.store.failing_for())
            && failing >= limit
        {
            return Err(NotReady::StoreFailing {
                secs: failing.as_secs(),
            });
        }
        Ok(())
    }
}

/// Why `/readyz` fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The relay is shutting down.
    #[error("draining")]
    Draining,
    /// Object-store writes have been failing for longer than
    /// `observability.unready_after_store_failure_secs`.
    #[error("object store writes failing for {secs}s")]
    StoreFailing {
        /// For how long, in whole seconds.
        secs: u64,
    },
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<RelayMetrics>,
    ready: Arc<Readiness>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = horizon_shared::http::metrics_router(move || metrics.render()).route(
        "/readyz",
        get(move || {
            let status = ready.check();
            async move {
                match status {
                    Ok(()) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
                    Err(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    )
                        .into_response(),
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests;
