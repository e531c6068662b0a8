//! Revocation of open connections: a certificate revoked while its node is
//! connected is cut at the reload that brings the CRL in, not at the node's
//! next handshake.
//!
//! After a reload installs new CRLs, the peer chain of every connection in
//! the registry of open connections ([`crate::open`]) is checked with the
//! new verifier; the revoked ones are closed with `CERTIFICATE_REVOKED`
//! (0x6). The check is synchronous in the reload, so the bound is the
//! reload itself: one verification per open connection.

use std::sync::Arc;

use horizon_shared::crl::is_revoked;
use horizon_shared::proto::error_code;
use horizon_shared::tls::peer_chain;
use rustls::server::danger::ClientCertVerifier;
use tracing::warn;

use crate::open::OpenConnections;

/// Closes every open connection whose peer `verifier` now finds revoked;
/// returns how many.
pub(crate) fn close_revoked(
    open: &OpenConnections,
    verifier: &Arc<dyn ClientCertVerifier>,
) -> usize {
    let mut closed = 0;
    for (node, conn) in open.all() {
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
