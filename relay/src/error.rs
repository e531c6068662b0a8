//! Why the relay could not start.

use std::net::SocketAddr;

/// Errors that stop the relay from starting.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Certificates could not be loaded.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] horizon_shared::tls::TlsError),
    /// The development PKI could not be created.
    #[error("development certificates: {0}")]
    DevCerts(#[from] horizon_shared::devcerts::DevCertError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The object store could not be set up.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A sink could not be started.
    #[error("sink: {0}")]
    Sink(#[from] crate::sink::StartError),
    /// The QUIC transport configuration was refused.
    #[error("invalid transport setting: {0}")]
    Transport(#[source] quinn::VarIntBoundsExceeded),
}
