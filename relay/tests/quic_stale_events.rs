//! The QUIC stack's endpoint must not panic on a connection event that
//! reaches it after the connection was drained.
//!
//! quinn-proto 0.11.19 indexed its connection slab with the event's handle
//! for `ResetToken`, `NeedIdentifiers` and `RetireConnectionId`, so such an
//! event for a handle already removed by `Drained` panicked with "invalid
//! key" and took the relay down (issue #28, under scarce CPU). The
//! workspace builds the patched copy in `vendor/quinn-proto`
//! (vendor/README.md). This test drives a real client and server
//! connection through quinn-proto's state machines, in memory: it holds
//! back the three kinds of event as the connections emit them, drains the
//! connections, and then hands the held events to their endpoints, which
//! must ignore them. On the unpatched crate it panics.

#![allow(clippy::unwrap_used)]

mod common;

use common::quic_pair::{pair, run};
use quinn_proto::EndpointEvent;

fn kind(event: &EndpointEvent) -> String {
    let debug = format!("{event:?}");
    debug
        .trim_start_matches("EndpointEvent(")
        .split(['(', ')'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn events_for_a_drained_connection_are_ignored() {
    let (mut client, mut server, mut now) = pair(None);
    // The client's events (the server's reset token, its own connection
    // IDs) are held from the start; the server's are handled, so that it
    // issues the connection IDs the client will move to.
    client.hold = true;
    run(&mut client, &mut server, &mut now);
    let (_, conn) = client.conn.as_ref().unwrap();
    assert!(!conn.is_handshaking(), "the handshake completed");
    assert!(server.conn.is_some(), "the server accepted");

    // The client moves to a new connection ID and retires the old one: the
    // server's connection then emits RetireConnectionId, held this time.
    server.hold = true;
    client.conn.as_mut().unwrap().1.local_address_changed();
    run(&mut client, &mut server, &mut now);

    let kinds: Vec<String> = client.held.iter().chain(&server.held).map(kind).collect();
    for expected in ["ResetToken", "NeedIdentifiers", "RetireConnectionId"] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "a {expected} event was held back: {kinds:?}"
        );
    }

    // Both connections drain; then their held events arrive, stale.
    for side in [&mut client, &mut server] {
        let ch = side.drain();
        for event in std::mem::take(&mut side.held) {
            assert!(
                side.endpoint.handle_event(ch, event).is_none(),
                "a stale event is ignored, with nothing for the connection"
            );
        }
        assert_eq!(side.endpoint.open_connections(), 0);
    }
}
