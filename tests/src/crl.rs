//! Certificate revocation lists made by the openssl command-line tool (a
//! CA implementation independent of the relay's), from a test PKI's CA.

use std::path::{Path, PathBuf};
use std::process::Command;

/// An openssl CA database over a test CA's certificate and key, in its own
/// directory: revoke certificates, then issue CRLs.
#[derive(Debug)]
pub struct OpensslCa {
    dir: tempfile::TempDir,
    ca_cert: PathBuf,
    ca_key: PathBuf,
    revoked: usize,
}

/// When a CRL is due again.
#[derive(Debug, Clone, Copy)]
pub enum NextUpdate {
    /// In a day (a current CRL).
    InADay,
    /// Yesterday (an expired CRL): last update two days ago.
    Yesterday,
}

impl OpensslCa {
    /// A database for the CA in `ca_cert` / `ca_key` (PEM).
    pub fn new(ca_cert: &Path, ca_key: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("index.txt"), "").expect("index");
        std::fs::write(dir.path().join("crlnumber"), "1000\n").expect("crlnumber");
        let conf = format!(
            "[ca]\ndefault_ca = test\n[test]\ndatabase = {d}/index.txt\ncrlnumber = {d}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 1\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("ca.cnf"), conf).expect("conf");
        Self {
            dir,
            ca_cert: ca_cert.to_owned(),
            ca_key: ca_key.to_owned(),
            revoked: 0,
        }
    }

    fn openssl(&self, args: &[&str]) {
        let conf = self.dir.path().join("ca.cnf");
        let out = Command::new("openssl")
            .arg(args[0])
            .arg("-config")
            .arg(&conf)
            .arg("-cert")
            .arg(&self.ca_cert)
            .arg("-keyfile")
            .arg(&self.ca_key)
            .args(&args[1..])
            .output()
            .expect("the openssl command-line tool runs (apt install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Marks the certificate (PEM text) revoked in the database.
    pub fn revoke(&mut self, cert_pem: &str) {
        self.revoked += 1;
        let path = self
            .dir
            .path()
            .join(format!("revoked-{}.pem", self.revoked));
        std::fs::write(&path, cert_pem).expect("write cert");
        self.openssl(&["ca", "-revoke", path.to_str().expect("utf-8 path")]);
    }

    /// Writes a CRL of every certificate revoked so far to `out`, PEM or DER.
    pub fn write_crl(&self, out: &Path, next: NextUpdate, der: bool) {
        let pem = self.dir.path().join("crl.pem");
        let pem_s = pem.to_str().expect("utf-8 path");
        match next {
            NextUpdate::InADay => self.openssl(&["ca", "-gencrl", "-crldays", "1", "-out", pem_s]),
            NextUpdate::Yesterday => {
                let t = |days: i64| {
                    let at = time::OffsetDateTime::now_utc() - time::Duration::days(days);
                    format!(
                        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
                        at.year(),
                        u8::from(at.month()),
                        at.day(),
                        at.hour(),
                        at.minute(),
                        at.second()
                    )
                };
                let (last, next) = (t(2), t(1));
                self.openssl(&[
                    "ca",
                    "-gencrl",
                    "-crl_lastupdate",
                    &last,
                    "-crl_nextupdate",
                    &next,
                    "-out",
                    pem_s,
                ]);
            }
        }
        if der {
            let st = Command::new("openssl")
                .args(["crl", "-in", pem_s, "-outform", "DER", "-out"])
                .arg(out)
                .status()
                .expect("openssl runs");
            assert!(st.success(), "openssl crl -outform DER failed");
        } else {
            std::fs::copy(&pem, out).expect("copy CRL");
        }
    }
}
