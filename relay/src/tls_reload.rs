//! Loading the relay's TLS material (certificate, key, client CA, CRLs)
//! and reloading it on SIGHUP, including the revocation of open
//! connections (see `revocation.rs`).

use std::sync::Arc;

use horizon_shared::crl::Revocation;
use horizon_shared::devcerts::DevPki;
use horizon_shared::tls::{TlsMaterial, client_verifier, quic_server_config_with};
use tracing::{info, warn};

use crate::config::{CrlSettings, TlsSource};
use crate::error::RelayError;
use crate::state::Shared;

/// Reloads the relay's certificate, key, client CA and CRLs from their
/// source (SIGHUP). New connections use the new ones; open connections keep
/// theirs, except that those whose node certificate the new CRLs revoke are
/// closed (`CERTIFICATE_REVOKED`).
#[derive(Debug, Clone)]
pub struct TlsReloader {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) source: TlsSource,
    pub(crate) crl: CrlSettings,
    pub(crate) transport: Arc<quinn::TransportConfig>,
    pub(crate) shared: Arc<Shared>,
}

/// What a reload installed and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// CRLs now in use.
    pub crls: usize,
    /// Whether one of them is past its `nextUpdate`.
    pub crl_expired: bool,
    /// Open connections closed because their node is now revoked.
    pub revoked_closed: usize,
}

impl TlsReloader {
    /// Loads the files again and installs them for new connections, then
    /// closes the open connections they revoke. On error nothing changes:
    /// the current certificates and CRLs stay in use. Counted in
    /// `horizon_relay_tls_reloads_total{result}`.
    pub fn reload(&self) -> Result<Reloaded, RelayError> {
        self.reload_with(&self.crl)
    }

    /// Like [`reload`](Self::reload), with the CRL settings of a reloaded
    /// configuration (so that `security.tls_crl_path` applies on SIGHUP).
    pub fn reload_with(&self, crl: &CrlSettings) -> Result<Reloaded, RelayError> {
        let r = self.try_reload(crl);
        self.shared.metrics.tls.reloaded(r.is_ok());
        r
    }

    fn try_reload(&self, crl: &CrlSettings) -> Result<Reloaded, RelayError> {
        let tls = load_tls(&self.source, crl)?;
        let verifier = client_verifier(&tls)?;
        let mut server = quic_server_config_with(&tls, verifier.clone())?;
        server.transport_config(self.transport.clone());
        self.endpoint.set_server_config(Some(server));
        self.shared.metrics.tls.set_crls(&tls.revocation);
        let revoked_closed = if tls.revocation.crls.is_empty() {
            0
        } else {
            crate::revocation::close_revoked(&self.shared.open, &verifier)
        };
        self.shared
            .metrics
            .tls
            .revoked_closed
            .inc_by(revoked_closed as u64);
        Ok(Reloaded {
            crls: tls.revocation.crls.len(),
            crl_expired: tls.revocation.expired(unix_now()),
            revoked_closed,
        })
    }
}

fn unix_now() -> i64 {
    horizon_shared::clock::unix_nanos_now() / 1_000_000_000
}

/// Loads the configured certificates (creating the development PKI if the
/// configuration asks for it) and CRLs.
pub fn load_tls(source: &TlsSource, crl: &CrlSettings) -> Result<TlsMaterial, RelayError> {
    let mut tls = load_certs(source)?;
    tls.revocation = Revocation::load(&crl.paths, &tls.ca, crl.enforce_next_update)
        .map_err(horizon_shared::tls::TlsError::from)?;
    if tls.revocation.expired(unix_now()) {
        warn!(
            next_update = tls.revocation.next_update,
            enforced = crl.enforce_next_update,
            "a CRL is past its nextUpdate: publish a fresh one"
        );
    }
    Ok(tls)
}

fn load_certs(source: &TlsSource) -> Result<TlsMaterial, RelayError> {
    Ok(match source {
        TlsSource::Files { cert, key, ca } => TlsMaterial::load(cert, key, ca)?,
        TlsSource::Dev(dir) => {
            let (pki, created) = DevPki::ensure(dir)?;
            if created {
                info!(dir = %dir.display(), "created a development CA and relay certificate (not for production)");
            } else {
                info!(dir = %dir.display(), "using development certificates (not for production)");
            }
            TlsMaterial::load(&pki.server_cert, &pki.server_key, &pki.ca_cert)?
        }
    })
}
