//! How the client tells a dead relay from a slow one, and an established
//! connection from one the relay never confirmed.

use std::time::{Duration, Instant};

use quinn::Connection;

/// Whether the relay confirmed the handshake (RFC 9001 §4.1.2: the client
/// received HANDSHAKE_DONE). The client's side of a handshake completes a
/// round trip before the relay's; until the relay confirms it, the
/// connection is not established, and ending there is a failed attempt.
pub(super) fn confirmed(conn: &Connection) -> bool {
    conn.stats().frame_rx.handshake_done > 0
}

/// How often the reader checks that the relay is still answering.
pub(super) const LIVENESS_CHECK: Duration = Duration::from_millis(250);

/// The silence after which the relay is taken for gone: the configured
/// timeout, or eight round trips if the path is that slow. A relay busy with
/// a thousand handshakes after a restart acknowledges late, and its round
/// trips say so (the estimate includes its acknowledgement delays); a dead
/// relay stops the estimate where it was.
pub(super) fn liveness_limit(configured: Duration, rtt: Duration) -> Duration {
    configured.max(rtt.saturating_mul(8))
}

/// When the relay last acknowledged a packet of ours, as seen in the
/// connection's count of QUIC ACK frames received. Only the relay can send
/// those (they arrive in packets that decrypt), unlike bare datagrams: once
/// a balancer moves a dead relay's flow, another relay may answer it with
/// stateless resets that the client cannot match and ignores.
pub(super) struct Heard {
    acks: u64,
    at: Instant,
}

impl Heard {
    pub(super) fn new(conn: &Connection) -> Self {
        Self {
            acks: conn.stats().frame_rx.acks,
            at: Instant::now(),
        }
    }

    /// Time since the relay last acknowledged anything.
    pub(super) fn silent_for(&mut self, conn: &Connection) -> Duration {
        let now = conn.stats().frame_rx.acks;
        if now != self.acks {
            self.acks = now;
            self.at = Instant::now();
        }
        self.at.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_limit_grows_with_a_slow_path_only() {
        let three = Duration::from_secs(3);
        assert_eq!(liveness_limit(three, Duration::from_millis(1)), three);
        assert_eq!(liveness_limit(three, Duration::from_millis(300)), three);
        assert_eq!(
            liveness_limit(three, Duration::from_secs(1)),
            Duration::from_secs(8)
        );
    }
}
