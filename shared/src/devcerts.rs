//! A development certificate authority.
//!
//! The relay's embedded defaults and the load generator use it to create a CA,
//! a server certificate for `localhost` and one client certificate per node,
//! in a directory that git ignores (`.dev/certs` by default). Tests use it to
//! make the certificates they need (expired, from another CA, CN only).
//! Production deployments bring their own PKI.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Errors from generating or storing development certificates.
#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// A CA able to issue server and client certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// A new self-signed CA, valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self, DevCertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Horizon Telemetry (development)");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            key_pem,
        })
    }

    /// Loads a CA from its certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, DevCertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A server certificate for the given DNS names and IP addresses, valid one year.
    pub fn issue_server(&self, names: &[&str]) -> Result<Issued, DevCertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*n).try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("relay"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, Duration::days(-1), Duration::days(365))
    }

    /// A client certificate for `node` (DNS SAN and CN), valid one year.
    pub fn issue_client(&self, node: &str) -> Result<Issued, DevCertError> {
        self.issue_client_valid(node, Duration::days(-1), Duration::days(365))
    }

    /// A client certificate for `node` valid from `now + from` to `now + to`
    /// (negative offsets lie in the past, to make expired certificates).
    pub fn issue_client_valid(
        &self,
        node: &str,
        from: Duration,
        to: Duration,
    ) -> Result<Issued, DevCertError> {
        let mut params = CertificateParams::new(vec![node.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, node);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, from, to)
    }

    /// A client certificate whose only identity is its subject CN (no SAN).
    pub fn issue_client_cn_only(&self, common_name: &str) -> Result<Issued, DevCertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, Duration::days(-1), Duration::days(365))
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        from: Duration,
        to: Duration,
    ) -> Result<Issued, DevCertError> {
        let now = OffsetDateTime::now_utc();
        params.not_before = now + from;
        params.not_after = now + to;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Paths of a development PKI on disk.
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The directory holding everything.
    pub dir: PathBuf,
    /// CA certificate.
    pub ca_cert: PathBuf,
    /// CA private key (used to issue node certificates).
    pub ca_key: PathBuf,
    /// Relay certificate (SANs `localhost`, `127.0.0.1`, `::1`).
    pub server_cert: PathBuf,
    /// Relay private key.
    pub server_key: PathBuf,
}

impl DevPki {
    /// The paths under `dir`, whether or not the files exist yet.
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        }
    }

    /// Creates the CA and the relay certificate under `dir` unless they exist.
    /// Returns the paths and whether anything was created.
    pub fn ensure(dir: &Path) -> Result<(Self, bool), DevCertError> {
        let pki = Self::at(dir);
        if pki.ca_cert.exists()
            && pki.ca_key.exists()
            && pki.server_cert.exists()
            && pki.server_key.exists()
        {
            return Ok((pki, false));
        }
        fs::create_dir_all(dir).map_err(|source| DevCertError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let ca = DevCa::generate("Horizon Telemetry development CA")?;
        let server = ca.issue_server(&["localhost", "127.0.0.1", "::1"])?;
        write_file(&pki.ca_cert, ca.cert_pem(), false)?;
        write_file(&pki.ca_key, ca.key_pem(), true)?;
        write_file(&pki.server_cert, &server.cert_pem, false)?;
        write_file(&pki.server_key, &server.key_pem, true)?;
        Ok((pki, true))
    }

    /// Loads the CA to issue more certificates.
    pub fn ca(&self) -> Result<DevCa, DevCertError> {
        DevCa::from_pem(&read_file(&self.ca_cert)?, &read_file(&self.ca_key)?)
    }

    /// Paths of the client certificate and key for `node`, issuing them
    /// first if they do not exist yet.
    pub fn client(&self, node: &str) -> Result<(PathBuf, PathBuf), DevCertError> {
        let safe: String = node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let cert = self.dir.join(format!("client-{safe}.pem"));
        let key = self.dir.join(format!("client-{safe}-key.pem"));
        if !(cert.exists() && key.exists()) {
            let issued = self.ca()?.issue_client(node)?;
            write_file(&cert, &issued.cert_pem, false)?;
            write_file(&key, &issued.key_pem, true)?;
        }
        Ok((cert, key))
    }
}

fn read_file(path: &Path) -> Result<String, DevCertError> {
    fs::read_to_string(path).map_err(|source| DevCertError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes a file atomically (temp file and rename); private keys get mode 0600.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), DevCertError> {
    let io = |source| DevCertError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{TlsMaterial, identity_from_cert};

    #[test]
    fn issued_certificates_carry_the_node_identity() {
        let ca = DevCa::generate("test CA").unwrap();
        let c = ca.issue_client("gpu-node-7.example").unwrap();
        let m = TlsMaterial::from_pem(&c.cert_pem, &c.key_pem, ca.cert_pem()).unwrap();
        assert_eq!(
            identity_from_cert(&m.chain[0]).unwrap(),
            "gpu-node-7.example"
        );
        let c = ca.issue_client_cn_only("cn-only-node").unwrap();
        let m = TlsMaterial::from_pem(&c.cert_pem, &c.key_pem, ca.cert_pem()).unwrap();
        assert_eq!(identity_from_cert(&m.chain[0]).unwrap(), "cn-only-node");
    }

    #[test]
    fn ensure_is_idempotent_and_ca_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, created) = DevPki::ensure(dir.path()).unwrap();
        assert!(created);
        let ca_before = fs::read_to_string(&pki.ca_cert).unwrap();
        let (_, created) = DevPki::ensure(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(ca_before, fs::read_to_string(&pki.ca_cert).unwrap());
        let (cert, key) = pki.client("node-1").unwrap();
        TlsMaterial::load(&cert, &key, &pki.ca_cert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&pki.ca_key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
