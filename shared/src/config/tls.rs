//! Where certificates come from: the `security` section's three paths, or
//! a development PKI.

use std::path::PathBuf;

use super::error::{ConfigError, invalid};

/// Where a relay's or an agent's certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Operator-provided PEM files.
    Files {
        /// Own certificate chain (the relay's server or the agent's node
        /// certificate).
        cert: PathBuf,
        /// Own private key.
        key: PathBuf,
        /// CA of the peer's certificates.
        ca: PathBuf,
    },
    /// The development PKI in this directory (the relay creates it when
    /// missing; an agent issues itself a node certificate from its CA).
    Dev(PathBuf),
}

/// The `security` keys that choose a [`TlsSource`].
#[derive(Debug, Clone, Copy)]
pub struct TlsPaths<'a> {
    /// `tls_cert_path`.
    pub cert: &'a str,
    /// `tls_key_path`.
    pub key: &'a str,
    /// `tls_ca_path`.
    pub ca: &'a str,
    /// `dev_certs_dir`.
    pub dev_certs_dir: &'a str,
}

impl TlsPaths<'_> {
    /// The three files when all are set, the development PKI when none is;
    /// `section` (e.g. `security`) names the keys in errors.
    pub fn source(&self, section: &str) -> Result<TlsSource, ConfigError> {
        let files = [
            ("tls_cert_path", self.cert),
            ("tls_key_path", self.key),
            ("tls_ca_path", self.ca),
        ];
        let set: Vec<&str> = files
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(k, _)| *k)
            .collect();
        if set.is_empty() {
            if self.dev_certs_dir.is_empty() {
                return Err(invalid(
                    format!("{section}.dev_certs_dir"),
                    "must be set when no certificate paths are given",
                ));
            }
            return Ok(TlsSource::Dev(PathBuf::from(self.dev_certs_dir)));
        }
        if let Some((missing, _)) = files.iter().find(|(_, p)| p.is_empty()) {
            return Err(invalid(
                section,
                format!(
                    "{section}.{missing} is empty while {section}.{} is set: set all of \
                     tls_cert_path, tls_key_path and tls_ca_path, or none (development certificates)",
                    set[0]
                ),
            ));
        }
        Ok(TlsSource::Files {
            cert: PathBuf::from(self.cert),
            key: PathBuf::from(self.key),
            ca: PathBuf::from(self.ca),
        })
    }
}
