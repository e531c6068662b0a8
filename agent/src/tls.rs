//! The node certificate: loaded from files, or issued from a development CA.

use std::path::PathBuf;

use horizon_shared::devcerts::{DevCertError, DevPki};
use horizon_shared::tls::TlsMaterial;

use horizon_shared::config::TlsSource;

/// Why the node certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The configured certificate, key or CA could not be loaded.
    #[error("loading the node certificate {}", cert.display())]
    Load {
        /// The certificate's path.
        cert: PathBuf,
        /// The cause.
        #[source]
        source: horizon_shared::tls::TlsError,
    },
    /// No certificate is configured and there is no development CA.
    #[error(
        "no node certificate configured and no development CA in {} \
         (start a development relay first, or set security.tls_*_path)",
        dir.display()
    )]
    NoDevCa {
        /// Where the development CA was looked for.
        dir: PathBuf,
    },
    /// The development CA could not issue the node a certificate.
    #[error("issuing a development certificate for {node}")]
    Issue {
        /// The node name.
        node: String,
        /// The cause.
        #[source]
        source: DevCertError,
    },
    /// The certificate issued by the development CA could not be loaded.
    #[error("loading the development certificate")]
    LoadDev(#[source] horizon_shared::tls::TlsError),
}

/// Loads (or, for a development PKI, issues for `dev_node`) the node
/// certificate.
pub fn load_tls(src: &TlsSource, dev_node: &str) -> Result<TlsMaterial, TlsError> {
    match src {
        TlsSource::Files { cert, key, ca } => {
            TlsMaterial::load(cert, key, ca).map_err(|source| TlsError::Load {
                cert: cert.clone(),
                source,
            })
        }
        TlsSource::Dev(dir) => {
            let pki = DevPki::at(dir);
            if !pki.ca_cert.exists() || !pki.ca_key.exists() {
                return Err(TlsError::NoDevCa { dir: dir.clone() });
            }
            let (cert, key) = pki.client(dev_node).map_err(|source| TlsError::Issue {
                node: dev_node.to_owned(),
                source,
            })?;
            TlsMaterial::load(&cert, &key, &pki.ca_cert).map_err(TlsError::LoadDev)
        }
    }
}
