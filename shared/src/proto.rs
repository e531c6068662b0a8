//! Wire-protocol messages, generated at build time from
//! `proto/horizon/telemetry/v1/telemetry.proto` (see `docs/protocol.md`).

#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/horizon.telemetry.v1.rs"));
}

pub use v1::*;

/// QUIC application error codes used to reset streams and close connections.
///
/// They are part of the protocol (see `docs/protocol.md`).
pub mod error_code {
    /// Normal close.
    pub const NO_ERROR: u32 = 0x0;
    /// A frame's length prefix exceeded the relay's maximum frame size.
    pub const FRAME_TOO_LARGE: u32 = 0x1;
    /// A frame could not be decoded (zero length, truncated, not protobuf).
    pub const MALFORMED_FRAME: u32 = 0x2;
    /// The relay is shutting down; reconnect (through the load balancer).
    pub const SHUTTING_DOWN: u32 = 0x3;
    /// The relay is at its connection limit; try again later or elsewhere.
    pub const SERVER_BUSY: u32 = 0x4;
    /// The peer did something the protocol forbids (e.g. opened a
    /// unidirectional stream).
    pub const PROTOCOL_VIOLATION: u32 = 0x5;
    /// The node's certificate was revoked by a CRL the relay loaded while
    /// the connection was open; do not reconnect with that certificate.
    pub const CERTIFICATE_REVOKED: u32 = 0x6;
    /// A frame's payload did not arrive in time after its length prefix
    /// (stream reset; the agent resends unacked batches on a new stream).
    pub const FRAME_TIMEOUT: u32 = 0x7;
    /// The node opened a connection beyond the relay's
    /// `server.max_connections_per_node`: this one, its oldest, was closed
    /// to make room. Treat it as a lost connection (resend unacked batches
    /// on a newer one) after the usual pause; repeated, more connections
    /// than the cap use this node's certificate.
    pub const CONNECTION_REPLACED: u32 = 0x8;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in docs/protocol.md, byte for byte.
    #[test]
    fn documented_example_frame() {
        let frame = AgentFrame {
            kind: Some(agent_frame::Kind::Batch(MetricBatch {
                sequence: 1,
                series_defs: vec![SeriesDef {
                    id: 0,
                    metric: "gpu_util".into(),
                    labels: vec![Label {
                        key: "gpu".into(),
                        value: "0".into(),
                    }],
                }],
                series_ids: vec![0, 0],
                base_time_unix_nano: 1_700_000_000_000_000_000,
                time_deltas: vec![0, 1_000_000_000],
                values: vec![97.5, 98.0],
            })),
        };
        let hex: String = crate::codec::encode_to_vec(&frame)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, include_str!("../../docs/protocol-example.hex").trim());
    }
}
