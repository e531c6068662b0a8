//! Certificate revocation lists for the client-certificate verifier: loading
//! them (PEM or DER), checking that the client CA issued and signed them, and checking
//! an already verified peer's chain against them again (for connections
//! opened before a CRL arrived).
//!
//! Policy (docs/protocol.md §1):
//! - Only the node (end-entity) certificate is checked; a node certificate
//!   whose issuer has no CRL among those configured is refused (unknown
//!   status fails closed), so every issuing CA needs its CRL once any is set.
//! - A CRL past its `nextUpdate` keeps applying as it stands (what it
//!   revokes stays revoked, nothing else is refused) unless
//!   `enforce_next_update` is set, when every node certificate it covers is
//!   refused until a fresh CRL is loaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, Error as RustlsError};

/// Why a CRL file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// The file could not be read.
    #[error("cannot read CRL {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// PEM that holds no valid CRL block.
    #[error("CRL {path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Not a parsable X.509 CRL.
    #[error("CRL {path} (#{index} in the file) is not a valid X.509 CRL: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Position in the file, from 1.
        index: usize,
        /// The parser's message.
        message: String,
    },
    /// Issued (named or signed) by a CA other than the client CA.
    #[error(
        "CRL {path} (#{index} in the file) was not issued by the client CA (issuer {issuer}, or its signature does not verify with the CA's key)"
    )]
    Issuer {
        /// The file.
        path: PathBuf,
        /// Position in the file, from 1.
        index: usize,
        /// The CRL's issuer.
        issuer: String,
    },
}

/// CRLs issued by the client CA, and what an expired one does.
#[derive(Debug, Clone, Default)]
pub struct Revocation {
    /// The CRLs, DER.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Refuse the certificates a CRL covers once it is past its `nextUpdate`.
    pub enforce_next_update: bool,
    /// The earliest `nextUpdate` among the CRLs, Unix seconds.
    pub next_update: Option<i64>,
}

impl Revocation {
    /// Loads every CRL in `paths` (each file PEM, possibly several CRLs, or
    /// one DER CRL) and checks that one of the `ca` certificates issued it.
    pub fn load(
        paths: &[PathBuf],
        ca: &[CertificateDer<'_>],
        enforce_next_update: bool,
    ) -> Result<Self, CrlError> {
        let mut out = Self {
            enforce_next_update,
            ..Self::default()
        };
        let cas: Vec<_> = ca
            .iter()
            .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
            .map(|(_, c)| c)
            .collect();
        for path in paths {
            for (i, der) in read_crls(path)?.into_iter().enumerate() {
                let index = i + 1;
                let (_, crl) =
                    x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| CrlError::Parse {
                        path: path.clone(),
                        index,
                        message: e.to_string(),
                    })?;
                let signed_by_ca = cas.iter().any(|c| {
                    c.subject().as_raw() == crl.issuer().as_raw()
                        && crl.verify_signature(c.public_key()).is_ok()
                });
                if !signed_by_ca {
                    return Err(CrlError::Issuer {
                        path: path.clone(),
                        index,
                        issuer: crl.issuer().to_string(),
                    });
                }
                if let Some(next) = crl.next_update() {
                    let t = next.timestamp();
                    out.next_update = Some(out.next_update.map_or(t, |n: i64| n.min(t)));
                }
                out.crls.push(der);
            }
        }
        Ok(out)
    }

    /// Whether a CRL is past its `nextUpdate` at `now` (Unix seconds).
    pub fn expired(&self, now: i64) -> bool {
        self.next_update.is_some_and(|t| t <= now)
    }
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, CrlError> {
    let bytes = std::fs::read(path).map_err(|source| CrlError::Read {
        path: path.to_owned(),
        source,
    })?;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CrlError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if crls.is_empty() {
        return Err(CrlError::Pem {
            path: path.to_owned(),
            message: "PEM file holds no X509 CRL block".into(),
        });
    }
    Ok(crls)
}

/// Whether `verifier` (built with the current CRLs) now says a peer chain,
/// leaf first, is revoked. Other verification failures (an expired
/// certificate, a replaced CA) are not revocation and answer `false`: they
/// apply at the node's next handshake.
pub fn is_revoked(verifier: &Arc<dyn ClientCertVerifier>, chain: &[CertificateDer<'_>]) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    matches!(
        verifier.verify_client_cert(leaf, intermediates, UnixTime::now()),
        Err(RustlsError::InvalidCertificate(CertificateError::Revoked))
    )
}
