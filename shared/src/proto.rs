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
                    // No type: the example's bytes are those of version 1's
                    // first release.
                    metric_type: MetricType::Unspecified.into(),
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

    /// `SeriesDef` as agents and relays before `metric_type` knew it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct SeriesDefBefore {
        #[prost(uint32, tag = "1")]
        id: u32,
        #[prost(string, tag = "2")]
        metric: String,
        #[prost(message, repeated, tag = "3")]
        labels: Vec<Label>,
    }

    fn gpu_labels() -> Vec<Label> {
        vec![Label {
            key: "gpu".into(),
            value: "0".into(),
        }]
    }

    #[test]
    fn a_definition_without_a_type_decodes_as_unspecified() {
        use prost::Message;
        let old = SeriesDefBefore {
            id: 3,
            metric: "gpu_util".into(),
            labels: gpu_labels(),
        }
        .encode_to_vec();
        let def = SeriesDef::decode(old.as_slice()).unwrap();
        assert_eq!(def.metric_type(), MetricType::Unspecified);
        assert_eq!((def.id, def.metric.as_str()), (3, "gpu_util"));
        assert_eq!(def.labels, gpu_labels());
        // And an unspecified type is not written: a new agent's untyped
        // definition is the old one's bytes.
        let new = SeriesDef {
            id: 3,
            metric: "gpu_util".into(),
            labels: gpu_labels(),
            metric_type: MetricType::Unspecified.into(),
        };
        assert_eq!(new.encode_to_vec(), old);
    }

    #[test]
    fn a_typed_definition_round_trips_and_old_readers_skip_the_type() {
        use prost::Message;
        for t in [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::Summary,
        ] {
            let def = SeriesDef {
                id: 7,
                metric: "gpu_energy_joules_total".into(),
                labels: gpu_labels(),
                metric_type: t.into(),
            };
            let bytes = def.encode_to_vec();
            // Field 4, a varint: the type's number.
            assert_eq!(bytes[bytes.len() - 2..], [0x20, t as u8]);
            let back = SeriesDef::decode(bytes.as_slice()).unwrap();
            assert_eq!(back, def);
            assert_eq!(back.metric_type(), t);
            // A reader of the definition before the field: the rest intact.
            let old = SeriesDefBefore::decode(bytes.as_slice()).unwrap();
            assert_eq!(
                (old.id, old.metric.as_str(), old.labels),
                (7, "gpu_energy_joules_total", gpu_labels())
            );
        }
        // A type this revision does not know (a later one's) reads as
        // unspecified.
        let later = SeriesDef {
            metric_type: 9,
            ..SeriesDef::default()
        };
        let back = SeriesDef::decode(later.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.metric_type(), MetricType::Unspecified);
    }
}
