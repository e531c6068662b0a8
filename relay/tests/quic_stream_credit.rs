//! How stream credit comes back to an agent, as docs/protocol.md §2 states
//! it: with the relay's `server.max_streams_per_connection` (16 by
//! default), the QUIC stack announces new credit only once more than an
//! eighth of the limit has been freed, so a 17th stream opens once 3 of the
//! 16 have ended, and 3 more then open at once.
//!
//! Run in memory through quinn-proto's state machines with the relay's
//! stream limits (`common::quic_pair`), so it is deterministic: a stream
//! that cannot open is `None` from `open`, not a wait.

#![allow(clippy::unwrap_used)]

mod common;

use common::quic_pair::{Side, pair, run};
use quinn_proto::{Dir, StreamId};

/// The relay's default `server.max_streams_per_connection`, set as
/// `relay/src/server.rs` sets it.
const STREAMS: u32 = 16;

fn client_opens(client: &mut Side) -> Option<StreamId> {
    let (_, conn) = client.conn.as_mut().unwrap();
    let id = conn.streams().open(Dir::Bi)?;
    conn.send_stream(id).write(b"batch").unwrap();
    Some(id)
}

/// The relay's side: accepts new streams and reads what arrived; a stream
/// the agent finished is read to its end and finished in turn (FIN).
fn relay_reads(server: &mut Side) {
    let (_, conn) = server.conn.as_mut().unwrap();
    while conn.streams().accept(Dir::Bi).is_some() {}
    for i in 0..u64::from(STREAMS) * 2 {
        let id = StreamId::new(quinn_proto::Side::Client, Dir::Bi, i);
        let mut stream = conn.recv_stream(id);
        let Ok(mut chunks) = stream.read(true) else {
            continue;
        };
        let mut ended = false;
        loop {
            match chunks.next(usize::MAX) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let _ = chunks.finalize();
        if ended {
            let _ = conn.send_stream(id).finish();
        }
    }
}

/// The agent finishes its half of stream `id` (FIN).
fn agent_ends(client: &mut Side, id: StreamId) {
    let (_, conn) = client.conn.as_mut().unwrap();
    conn.send_stream(id).finish().unwrap();
}

/// The agent reads the relay's halves of `ids` as far as they arrived.
fn agent_reads(client: &mut Side, ids: &[StreamId]) {
    let (_, conn) = client.conn.as_mut().unwrap();
    for id in ids {
        let mut stream = conn.recv_stream(*id);
        if let Ok(mut chunks) = stream.read(true) {
            while let Ok(Some(_)) = chunks.next(usize::MAX) {}
            let _ = chunks.finalize();
        }
    }
}

/// One round: the agent's writes reach the relay, the relay reads and
/// answers, the agent reads the answers, until both are quiet.
fn settle(client: &mut Side, server: &mut Side, now: &mut std::time::Instant, ids: &[StreamId]) {
    for _ in 0..3 {
        run(client, server, now);
        relay_reads(server);
        run(client, server, now);
        agent_reads(client, ids);
    }
    run(client, server, now);
}

#[test]
fn a_seventeenth_stream_opens_once_three_of_sixteen_have_ended() {
    let mut transport = quinn_proto::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(STREAMS.into())
        .max_concurrent_uni_streams(0u32.into());
    let (mut client, mut server, mut now) = pair(Some(transport));
    run(&mut client, &mut server, &mut now);

    let mut open: Vec<StreamId> = (0..STREAMS)
        .map(|i| client_opens(&mut client).unwrap_or_else(|| panic!("stream {i} opens")))
        .collect();
    assert!(client_opens(&mut client).is_none(), "16 open: no 17th");
    settle(&mut client, &mut server, &mut now, &open);

    // Two streams end, both directions: still no credit for a 17th.
    for _ in 0..2 {
        let id = open.remove(0);
        agent_ends(&mut client, id);
        settle(&mut client, &mut server, &mut now, &[id]);
    }
    assert!(
        client_opens(&mut client).is_none(),
        "2 of 16 ended: the credit is not announced yet"
    );

    // The third: credit for three streams arrives at once.
    let id = open.remove(0);
    agent_ends(&mut client, id);
    settle(&mut client, &mut server, &mut now, &[id]);
    for n in 17..=19 {
        assert!(
            client_opens(&mut client).is_some(),
            "3 of 16 ended: stream {n} opens"
        );
    }
    assert!(
        client_opens(&mut client).is_none(),
        "16 open again: no 20th"
    );
}
