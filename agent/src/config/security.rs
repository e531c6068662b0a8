//! `security`: the node certificate, from files or issued from a
//! development CA.

use horizon_shared::config::host::host_name;
use horizon_shared::config::{ConfigError, TlsPaths, TlsSource};
use serde::Deserialize;

/// `security`: the node certificate. The node's name is the one in its
/// certificate, as the relay reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Node certificate (PEM).
    pub tls_cert_path: String,
    /// Node private key (PEM).
    pub tls_key_path: String,
    /// CA of the relay's certificate (PEM).
    pub tls_ca_path: String,
    /// When the paths above are empty: a development PKI made by the relay
    /// (`ca.pem`, `ca-key.pem`); the agent issues itself a node certificate
    /// from that CA. Never use this in production.
    pub dev_certs_dir: String,
    /// Node name for a development certificate; empty: the host name.
    pub dev_node_name: String,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
            tls_ca_path: String::new(),
            dev_certs_dir: ".dev/certs".into(),
            dev_node_name: String::new(),
        }
    }
}

/// The `security` section after validation.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// Certificates.
    pub tls: TlsSource,
    /// Node name of a development certificate (with [`TlsSource::Dev`];
    /// empty with files).
    pub dev_node_name: String,
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
        let dev_node_name = match tls {
            TlsSource::Files { .. } => String::new(),
            TlsSource::Dev(_) if self.dev_node_name.is_empty() => host_name("localhost"),
            TlsSource::Dev(_) => self.dev_node_name.clone(),
        };
        Ok(SecuritySettings { tls, dev_node_name })
    }
}
