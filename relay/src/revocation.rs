//! The open connections, so that a certificate revoked while its node is
//! connected is cut at the reload that brings the CRL in, not at the node's
//! next handshake.
//!
//! Each authenticated connection is registered for as long as it is served.
//! After a reload installs new CRLs, every registered connection's peer
//! chain is checked with the new verifier; the revoked ones are closed with
//! `CERTIFICATE_REVOKED` (0x6). The check is synchronous in the reload, so
//! the bound is the reload itself: one verification per open connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use horizon_shared::crl::is_revoked;
use horizon_shared::proto::error_code;
use horizon_shared::tls::peer_chain;
use rustls::server::danger::ClientCertVerifier;
use tracing::warn;

/// The connections being served, by quinn's stable id.
#[derive(Debug, Default)]
pub(crate) struct OpenConnections {
    open: Mutex<HashMap<usize, (String, quinn::Connection)>>,
}

/// Removes its connection from the registry when dropped.
#[derive(Debug)]
pub(crate) struct Registered {
    registry: Arc<OpenConnections>,
    id: usize,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl OpenConnections {
    /// Registers `conn`, served for `node`, until the guard is dropped.
    pub(crate) fn register(self: &Arc<Self>, node: &str, conn: &quinn::Connection) -> Registered {
        let id = conn.stable_id();
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (node.to_owned(), conn.clone()));
        Registered {
            registry: self.clone(),
            id,
        }
    }

    /// Closes every connection whose peer `verifier` now finds revoked;
    /// returns how many.
    pub(crate) fn close_revoked(&self, verifier: &Arc<dyn ClientCertVerifier>) -> usize {
        let open: Vec<(String, quinn::Connection)> = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut closed = 0;
        for (node, conn) in open {
            if is_revoked(verifier, &peer_chain(&conn)) {
                warn!(%node, remote = %conn.remote_address(), "closing connection: node certificate revoked by the reloaded CRL");
                conn.close(
                    error_code::CERTIFICATE_REVOKED.into(),
                    b"node certificate revoked",
                );
                closed += 1;
            }
        }
        closed
    }
}
