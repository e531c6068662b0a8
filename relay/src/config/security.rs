//! `security`: the relay's certificates and the revocation lists of node
//! certificates.

use std::path::PathBuf;

use horizon_shared::config::{ConfigError, TlsPaths, TlsSource};
use serde::Deserialize;

/// `security`: certificates. When the three paths are empty the relay uses
/// (and if needed creates) a development PKI in `dev_certs_dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Server certificate chain (PEM).
    pub tls_cert_path: String,
    /// Server private key (PEM).
    pub tls_key_path: String,
    /// CA that issues node (client) certificates (PEM).
    pub tls_ca_path: String,
    /// Where the development PKI lives when the paths above are empty.
    pub dev_certs_dir: String,
    /// Certificate revocation lists issued by the client CA (PEM or DER):
    /// one path or a list; empty: no revocation checks.
    pub tls_crl_path: PathList,
    /// Refuse every node certificate a CRL covers once the CRL is past its
    /// `nextUpdate` (fail closed); by default an expired CRL keeps applying
    /// as it stands.
    pub tls_crl_enforce_next_update: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
            tls_ca_path: String::new(),
            dev_certs_dir: ".dev/certs".into(),
            tls_crl_path: PathList::default(),
            tls_crl_enforce_next_update: false,
        }
    }
}

/// One path or a list of paths.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PathList {
    /// One path (empty: none).
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Default for PathList {
    fn default() -> Self {
        Self::One(String::new())
    }
}

impl PathList {
    /// The non-empty paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Self::One(p) => vec![p.clone()],
            Self::Many(v) => v.clone(),
        }
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
    }
}

/// Certificate revocation settings (`security.tls_crl_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlSettings {
    /// CRL files, reloaded on SIGHUP with the certificates.
    pub paths: Vec<PathBuf>,
    /// Whether a CRL past its `nextUpdate` refuses what it covers.
    pub enforce_next_update: bool,
}

/// The `security` section after validation.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// Certificates.
    pub tls: TlsSource,
    /// Certificate revocation lists.
    pub crl: CrlSettings,
}

impl SecurityConfig {
    /// Checks the section: all three certificate paths or none.
    pub fn validate(&self) -> Result<SecuritySettings, ConfigError> {
        let tls = TlsPaths {
            cert: &self.tls_cert_path,
            key: &self.tls_key_path,
            ca: &self.tls_ca_path,
            dev_certs_dir: &self.dev_certs_dir,
        }
        .source("security")?;
        Ok(SecuritySettings {
            tls,
            crl: CrlSettings {
                paths: self.tls_crl_path.paths(),
                enforce_next_update: self.tls_crl_enforce_next_update,
            },
        })
    }
}
