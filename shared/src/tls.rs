//! TLS for both ends: PEM loading, rustls configs with mutual authentication,
//! and the node identity carried by a client certificate.
//!
//! Both ends use rustls with the *ring* provider, TLS 1.3 only (QUIC requires
//! it) and ALPN [`crate::ALPN`].

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use x509_parser::extensions::GeneralName;

/// Errors from loading certificates or building TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {source}")]
    Pem {
        /// What was expected ("certificate chain", "private key", "CA").
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file held no certificate.
    #[error("{path} contains no certificate")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// rustls refused the configuration (bad key, key not matching the certificate, ...).
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (for example an empty CA set
    /// or a CRL rustls cannot parse).
    #[error("invalid client CA or CRL: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// quinn refused the rustls configuration.
    #[error("TLS configuration not usable for QUIC: {0}")]
    Quic(String),
    /// A CRL file cannot be used.
    #[error(transparent)]
    Crl(#[from] crate::crl::CrlError),
    /// The peer certificate carries no usable node identity.
    #[error("client certificate has no usable identity: {0}")]
    Identity(String),
}

/// Certificate chain, key and trusted CA of one endpoint, loaded from PEM.
#[derive(Debug)]
pub struct TlsMaterial {
    /// Our certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Our private key.
    pub key: PrivateKeyDer<'static>,
    /// CA certificates we trust for the peer.
    pub ca: Vec<CertificateDer<'static>>,
    /// Revocation lists for the peer's certificate (server side only).
    pub revocation: crate::crl::Revocation,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            ca: self.ca.clone(),
            revocation: self.revocation.clone(),
        }
    }
}

impl TlsMaterial {
    /// Loads the three PEM files. Errors name the file that failed.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            chain: load_certs(cert, "certificate chain")?,
            key: PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
                what: "private key",
                path: key.display().to_string(),
                source,
            })?,
            ca: load_certs(ca, "CA")?,
            revocation: crate::crl::Revocation::default(),
        })
    }

    /// Builds the material from PEM text (tests, generated dev certificates).
    pub fn from_pem(cert: &str, key: &str, ca: &str) -> Result<Self, TlsError> {
        let pem_err = |what: &'static str| {
            move |source| TlsError::Pem {
                what,
                path: "<memory>".into(),
                source,
            }
        };
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err("certificate chain"))?;
        let ca = CertificateDer::pem_slice_iter(ca.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err("CA"))?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(pem_err("private key"))?;
        if chain.is_empty() || ca.is_empty() {
            return Err(TlsError::NoCertificate {
                path: "<memory>".into(),
            });
        }
        Ok(Self {
            chain,
            key,
            ca,
            revocation: crate::crl::Revocation::default(),
        })
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in &self.ca {
            roots.add(c.clone())?;
        }
        Ok(roots)
    }
}

fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            what,
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client-certificate verifier: chains to `material.ca`, and when CRLs
/// are set, the node certificate is checked against them (see
/// [`crate::crl`] for the policy).
pub fn client_verifier(material: &TlsMaterial) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let rev = &material.revocation;
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(material.roots()?), provider());
    if !rev.crls.is_empty() {
        builder = builder
            .with_crls(rev.crls.iter().cloned())
            .only_check_end_entity_revocation();
        if rev.enforce_next_update {
            builder = builder.enforce_revocation_expiration();
        }
    }
    Ok(builder.build()?)
}

/// rustls server config: our certificate, client certificates required and
/// verified by [`client_verifier`], TLS 1.3, our ALPN.
pub fn server_crypto(material: &TlsMaterial) -> Result<rustls::ServerConfig, TlsError> {
    server_crypto_with(material, client_verifier(material)?)
}

/// [`server_crypto`] with a verifier already built.
pub fn server_crypto_with(
    material: &TlsMaterial,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.chain.clone(), material.key.clone_key())?;
    cfg.alpn_protocols = vec![crate::ALPN.to_vec()];
    Ok(cfg)
}

/// quinn server config around [`server_crypto`].
pub fn quic_server_config(material: &TlsMaterial) -> Result<quinn::ServerConfig, TlsError> {
    quic_server_config_with(material, client_verifier(material)?)
}

/// [`quic_server_config`] with a verifier already built.
pub fn quic_server_config_with(
    material: &TlsMaterial,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<quinn::ServerConfig, TlsError> {
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(server_crypto_with(material, verifier)?)
            .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

/// Whether a QUIC error code is in the CRYPTO_ERROR range (0x0100 to
/// 0x01ff): a TLS alert, in the low byte.
pub fn is_tls_alert(code: quinn::TransportErrorCode) -> bool {
    (0x100..=0x1ff).contains(&u64::from(code))
}

/// The certificate chain an established connection's peer presented, leaf
/// first (empty if none).
pub fn peer_chain(conn: &quinn::Connection) -> Vec<CertificateDer<'static>> {
    conn.peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .map(|b| *b)
        .unwrap_or_default()
}

/// quinn client config: presents our certificate, trusts `material.ca` for
/// the relay, TLS 1.3, our ALPN.
pub fn quic_client_config(material: &TlsMaterial) -> Result<quinn::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(material.roots()?)
        .with_client_auth_cert(material.chain.clone(), material.key.clone_key())?;
    cfg.alpn_protocols = vec![crate::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// The node identity in a certificate: its first DNS SAN, else its first URI
/// SAN, else its subject common name.
pub fn identity_from_cert(der: &CertificateDer<'_>) -> Result<String, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| TlsError::Identity(format!("unparsable certificate: {e}")))?;
    let mut uri = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => return checked_identity(dns),
                GeneralName::URI(u) if uri.is_none() => uri = Some(*u),
                _ => {}
            }
        }
    }
    if let Some(u) = uri {
        return checked_identity(u);
    }
    match cert
        .subject()
        .iter_common_name()
        .next()
        .map(|cn| cn.as_str())
    {
        Some(Ok(cn)) => checked_identity(cn),
        _ => Err(TlsError::Identity(
            "no DNS or URI SAN and no subject CN".into(),
        )),
    }
}

fn checked_identity(name: &str) -> Result<String, TlsError> {
    if name.is_empty() || name.len() > 253 || name.chars().any(char::is_control) {
        return Err(TlsError::Identity(format!(
            "{name:?} is not a valid node name"
        )));
    }
    Ok(name.to_owned())
}

/// The node identity of an established connection's peer.
pub fn peer_identity(conn: &quinn::Connection) -> Result<String, TlsError> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| TlsError::Identity("peer presented no certificate".into()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::Identity("empty certificate chain".into()))?;
    identity_from_cert(leaf)
}
