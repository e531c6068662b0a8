//! Certificate and revocation metrics: reloads, the CRLs in use, and the
//! connections closed because their node was revoked.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: String,
}

/// Handles to the TLS metrics.
#[derive(Debug)]
pub struct TlsMetrics {
    reloads: Family<Outcome, Counter>,
    /// CRLs in use.
    pub crls: Gauge,
    /// Earliest `nextUpdate` of the CRLs in use, Unix seconds (0: none).
    pub crl_next_update: Gauge,
    /// Open connections closed because a reloaded CRL revoked their node.
    pub revoked_closed: Counter,
}

impl TlsMetrics {
    /// Registers the metrics in `r`.
    pub fn new(r: &mut Registry) -> Self {
        let m = Self {
            reloads: Family::default(),
            crls: Gauge::default(),
            crl_next_update: Gauge::default(),
            revoked_closed: Counter::default(),
        };
        r.register(
            "tls_reloads",
            "Reloads of the certificates, key, client CA and CRLs (SIGHUP), by result (ok; error: a file was unusable and the current ones were kept)",
            m.reloads.clone(),
        );
        r.register(
            "tls_crls",
            "Certificate revocation lists in use (security.tls_crl_path)",
            m.crls.clone(),
        );
        r.register(
            "tls_crl_next_update_timestamp_seconds",
            "Earliest nextUpdate among the CRLs in use, Unix seconds (0: no CRL, or none has a nextUpdate); alert well before it passes",
            m.crl_next_update.clone(),
        );
        r.register(
            "revoked_connections_closed",
            "Open connections closed with CERTIFICATE_REVOKED because a reloaded CRL revoked their node certificate",
            m.revoked_closed.clone(),
        );
        for result in ["ok", "error"] {
            let _ = m.reloads.get_or_create(&Outcome {
                result: result.into(),
            });
        }
        m
    }

    /// Counts a reload, `ok` or `error`.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads
            .get_or_create(&Outcome {
                result: result.into(),
            })
            .inc();
    }

    /// Shows the CRLs now in use.
    pub fn set_crls(&self, rev: &horizon_shared::crl::Revocation) {
        self.crls
            .set(i64::try_from(rev.crls.len()).unwrap_or(i64::MAX));
        self.crl_next_update.set(rev.next_update.unwrap_or(0));
    }
}
