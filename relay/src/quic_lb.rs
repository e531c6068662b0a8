//! Routable connection IDs for load balancers that route QUIC by connection
//! ID (QUIC-LB, the "plaintext" algorithm), such as the QUIC listeners of
//! AWS network load balancers.
//!
//! With `server.quic_lb_server_id` set, every connection ID the relay issues
//! is laid out as:
//!
//! ```text
//! octet 0        config rotation (top 2 bits, always 0) | length of the rest (low 6 bits)
//! octets 1..=8   the relay's 8-byte server ID, as configured
//! octets 9..     random nonce (at least 4 bytes)
//! ```
//!
//! A balancer reads the server ID at octets 1 to 8 of the destination
//! connection ID of every packet and sends it to the relay registered with
//! that ID, whatever the packet's source address: a connection survives a NAT
//! rebinding or a new client port and stays on its relay. The layout is
//! draft-ietf-quic-load-balancers' plaintext CID algorithm with an 8-byte
//! server ID; the first octet is 0 in its top three bits, which reads as
//! config rotation 0 under both the draft's older 3-bit and newer 2-bit
//! encodings, and its low bits carry the length of the rest (15 for the
//! default 16-byte IDs), the draft's optional length self-description.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quinn::{ConnectionId, ConnectionIdGenerator};

/// Bytes of a server ID.
pub const SERVER_ID_LEN: usize = 8;
/// Shortest connection ID: first octet, server ID, 4-byte nonce.
pub const MIN_CID_LEN: usize = 1 + SERVER_ID_LEN + 4;
/// Longest connection ID QUIC version 1 allows.
pub const MAX_CID_LEN: usize = 20;
/// Connection ID length unless configured.
pub const DEFAULT_CID_LEN: usize = 16;

/// A relay's QUIC-LB server ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerId(pub [u8; SERVER_ID_LEN]);

/// Why a server ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a server ID: write 0x and 16 hex digits (8 bytes), e.g. 0x0123456789abcdef")]
pub struct ServerIdError(pub String);

impl ServerId {
    /// Parses `0x` followed by 16 hex digits, as AWS writes `QuicServerId`.
    pub fn parse(s: &str) -> Result<Self, ServerIdError> {
        let err = || ServerIdError(s.to_owned());
        let hex = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .ok_or_else(err)?;
        if hex.len() != 2 * SERVER_ID_LEN || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut id = [0u8; SERVER_ID_LEN];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(Self(id))
    }
}

impl std::fmt::Display for ServerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("0x")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Issues connection IDs that carry the relay's server ID (see the module
/// docs for the layout).
#[derive(Debug)]
pub struct QuicLbCidGenerator {
    server_id: ServerId,
    cid_len: usize,
    /// Mixed into the nonce if the system's random source ever fails, so
    /// that IDs stay unique.
    fallback: AtomicU64,
}

impl QuicLbCidGenerator {
    /// A generator of `cid_len`-byte IDs (between [`MIN_CID_LEN`] and
    /// [`MAX_CID_LEN`]; the configuration loader checks it).
    pub fn new(server_id: ServerId, cid_len: usize) -> Self {
        Self {
            server_id,
            cid_len: cid_len.clamp(MIN_CID_LEN, MAX_CID_LEN),
            fallback: AtomicU64::new(0),
        }
    }

    /// The server ID a connection ID of this layout carries, if it is long
    /// enough to carry one.
    pub fn server_id_of(cid: &[u8]) -> Option<ServerId> {
        let id = cid.get(1..=SERVER_ID_LEN)?;
        let mut out = [0u8; SERVER_ID_LEN];
        out.copy_from_slice(id);
        Some(ServerId(out))
    }
}

impl ConnectionIdGenerator for QuicLbCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut cid = [0u8; MAX_CID_LEN];
        let len = self.cid_len;
        // Config rotation 0 (top bits), then the length of the rest.
        cid[0] = u8::try_from(len - 1).unwrap_or(0) & 0x3f;
        cid[1..=SERVER_ID_LEN].copy_from_slice(&self.server_id.0);
        let nonce = &mut cid[1 + SERVER_ID_LEN..len];
        let random = rustls::crypto::ring::default_provider().secure_random;
        if random.fill(nonce).is_err() {
            // Never seen on Linux; unique if not random.
            let n = self.fallback.fetch_add(1, Ordering::Relaxed);
            let nanos = horizon_shared::clock::unix_nanos_now() as u64;
            for (i, b) in nonce.iter_mut().enumerate() {
                *b = ((n ^ nanos.rotate_left(17)) >> ((i % 8) * 8)) as u8;
            }
        }
        ConnectionId::new(&cid[..len])
    }

    // No `validate`: a packet for an unknown connection with another
    // relay's server ID (one the balancer misrouted, or whose relay died)
    // gets a stateless reset, which tells the agent at once to reconnect.

    fn cid_len(&self) -> usize {
        self.cid_len
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_parse_as_aws_writes_them() {
        let id = ServerId::parse("0x0123456789abcdef").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.0, [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(id.to_string(), "0x0123456789abcdef");
        assert_eq!(ServerId::parse("0X0123456789ABCDEF"), Ok(id));
        for bad in [
            "",
            "0123456789abcdef",
            "0x0123456789abcde",
            "0x0123456789abcdef0",
            "0x0123456789abcdeg",
            "0x+123456789abcdef",
            "0x０123456789abcde",
        ] {
            let e = ServerId::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("16 hex digits"), "{e}");
        }
    }

    #[test]
    fn connection_ids_carry_the_server_id_at_octets_1_to_8() {
        let id = ServerId([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
        for len in [MIN_CID_LEN, DEFAULT_CID_LEN, MAX_CID_LEN] {
            let mut g = QuicLbCidGenerator::new(id, len);
            assert_eq!(g.cid_len(), len);
            let a = g.generate_cid();
            let b = g.generate_cid();
            for cid in [&a, &b] {
                assert_eq!(cid.len(), len);
                assert_eq!(
                    cid[0],
                    (len - 1) as u8,
                    "config rotation 0, then the length"
                );
                assert_eq!(&cid[1..9], &id.0);
                assert_eq!(QuicLbCidGenerator::server_id_of(cid), Some(id));
            }
            assert_ne!(a[9..], b[9..], "nonces are random");
        }
        assert_eq!(QuicLbCidGenerator::server_id_of(&[0; 8]), None);
    }
}
