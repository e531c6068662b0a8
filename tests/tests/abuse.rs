//! The relay under abuse: half-open handshake floods, series dictionaries
//! grown without bound, frames that are announced and never finished, and
//! one node trickling frames on many connections. Loopback only; every loop is bounded
//! in count and time.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use horizon_e2e::flood::{
    DefinitionShape, OpenStream, capture_initials, definitions_frame, raw_connect, send_half_open,
    trickle_frames,
};
use horizon_e2e::{Metrics, TestRelay, send_values};
use horizon_shared::proto::RejectReason;

const IN_PROGRESS: &str = "horizon_relay_handshakes_in_progress";
const TIMED_OUT: &str = "horizon_relay_handshakes_timed_out_total";
const RETRIES: &str = "horizon_relay_handshake_retries_total";
const EVICTED: &str = r#"horizon_relay_handshakes_refused_total{reason="evicted"}"#;
const QUIC_CONNECTIONS: &str = "horizon_relay_quic_connections";
const LIMIT_REFUSED: &str = r#"horizon_relay_connections_refused_total{reason="limit"}"#;

/// Scrapes until `done` holds, at most 200 times 50 ms; returns the last
/// scrape either way (the caller asserts on it).
async fn scrape_until(relay: &TestRelay, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let mut m = relay.scrape().await;
    for _ in 0..200 {
        if done(&m) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = relay.scrape().await;
    }
    m
}

/// One batch with one point on a fresh raw connection's new stream: the
/// number of points accepted.
async fn one_point(conn: &quinn::Connection) -> u32 {
    let shape = DefinitionShape {
        labels: 0,
        value_bytes: 0,
    };
    let mut stream = OpenStream::open(conn).await.unwrap();
    let acks = stream
        .exchange(std::iter::once(definitions_frame(1, 1..1, shape, 0)))
        .await
        .unwrap();
    acks.iter().map(|a| a.accepted).sum()
}

#[tokio::test]
async fn half_open_handshakes_do_not_lock_agents_out() {
    // More half-open Initials than max_connections, and than the handshake bound.
    let relay = TestRelay::start(
        "server:\n  max_connections: 20\n  max_handshakes_in_progress: 8\n  handshake_timeout_secs: 60\n",
    )
    .await;
    let steady = relay.client("steady").await;
    let series = steady.series("gpu_util", &[("gpu", "0")]).unwrap();
    assert_eq!(send_values(&steady, series, 0..1).await[0].ack.accepted, 1);

    let initials = capture_initials(60).await.unwrap();
    let _flood = send_half_open(relay.addr, &initials, 0, 60).await.unwrap();
    // 8 fill the handshake bound; the other 52 come from unvalidated
    // addresses and get a stateless Retry, which they never answer.
    let m = scrape_until(&relay, |m| {
        m.get(IN_PROGRESS) == 8.0 && m.get(RETRIES) == 52.0
    })
    .await;
    assert_eq!(m.get(IN_PROGRESS), 8.0, "the handshake bound is full");
    assert_eq!(
        m.get(RETRIES),
        52.0,
        "one Retry per Initial beyond the bound"
    );

    // A new agent is admitted on its first attempt: quinn answers the
    // Retry and comes back validated; its Initial waits (at most 1 s, then
    // quinn resends it) until the oldest half-open has run for 3 s,
    // stalled, and takes its place.
    let newcomer = raw_connect(
        relay.addr,
        &relay.node_tls("newcomer"),
        Duration::from_secs(10),
    )
    .await
    .expect("a legitimate agent connects during the flood");
    assert_eq!(one_point(&newcomer).await, 1);
    // The agent already connected keeps streaming and getting acks.
    let acks = send_values(&steady, series, 1..4).await;
    assert!(acks.iter().all(|a| a.ack.accepted == 1), "{acks:?}");

    let m = relay.scrape().await;
    assert_eq!(m.get(EVICTED), 1.0, "the newcomer evicted one half-open");
    assert_eq!(m.get(RETRIES), 53.0, "the newcomer was retried once too");
    assert_eq!(m.get(IN_PROGRESS), 7.0);
    assert_eq!(m.get("horizon_relay_connections_active"), 2.0);
    assert_eq!(m.get(LIMIT_REFUSED), 0.0);
    newcomer.close(0u32.into(), b"done");
    steady.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_connect_storm_waits_for_handshake_places_instead_of_evicting_them() {
    // Every Initial gets a Retry, so all come back validated: 20 at once
    // against 4 places and their queue of 16. Each waits its turn, and none
    // ends a handshake already under way (evicting the oldest for each
    // newcomer ended them just before they finished, their clients told
    // "connection lost").
    let relay = TestRelay::start(
        "server:\n  max_connections: 100\n  max_handshakes_in_progress: 4\n  handshake_retry_per_sec: 0\n",
    )
    .await;
    let tls: Vec<_> = (0..20)
        .map(|i| relay.node_tls(&format!("storm-{i}")))
        .collect();
    let conns = futures::future::join_all(
        tls.iter()
            .map(|t| raw_connect(relay.addr, t, Duration::from_secs(10))),
    )
    .await;
    let mut accepted = 0;
    for conn in conns {
        let conn = conn.expect("every agent of the storm connects on its first attempt");
        accepted += one_point(&conn).await;
        conn.close(0u32.into(), b"done");
    }
    assert_eq!(accepted, 20, "every connection is served");
    let m = scrape_until(&relay, |m| m.get(IN_PROGRESS) == 0.0).await;
    assert_eq!(m.get(EVICTED), 0.0, "no handshake was evicted");
    assert_eq!(m.get(RETRIES), 20.0);
    assert_eq!(m.get("horizon_relay_handshakes_queued"), 0.0);
    assert_eq!(m.get("horizon_relay_connections_accepted_total"), 20.0);
    assert_eq!(
        m.get(r#"horizon_relay_handshakes_refused_total{reason="queue_full"}"#),
        0.0,
        "the queue holds the storm"
    );
    println!(
        "dropped after their wait in the queue (then resent): {}; handshake time, sum {:.2} s",
        m.get(r#"horizon_relay_handshakes_refused_total{reason="queue_timeout"}"#),
        m.get("horizon_relay_handshake_seconds_sum"),
    );
    relay.stop().await;
}

#[tokio::test]
async fn half_open_handshakes_are_freed_within_the_handshake_timeout() {
    let relay = TestRelay::start(
        "server:\n  max_connections: 4\n  max_handshakes_in_progress: 64\n  handshake_timeout_secs: 2\n",
    )
    .await;
    let initials = capture_initials(12).await.unwrap();
    let _flood = send_half_open(relay.addr, &initials, 0, 12).await.unwrap();
    let m = scrape_until(&relay, |m| m.get(IN_PROGRESS) + m.get(TIMED_OUT) == 12.0).await;
    assert_eq!(
        m.get(IN_PROGRESS) + m.get(TIMED_OUT),
        12.0,
        "every Initial started a handshake (the bound is not full)"
    );
    assert_eq!(m.get(RETRIES), 0.0);
    // More half-open handshakes than max_connections, yet an agent gets in.
    let agent = relay.client("agent").await;

    // The timeout ends them, and quinn lets go of their state.
    let m = scrape_until(&relay, |m| {
        m.get(TIMED_OUT) == 12.0 && m.get(QUIC_CONNECTIONS) == 1.0
    })
    .await;
    assert_eq!(m.get(TIMED_OUT), 12.0);
    assert_eq!(m.get(IN_PROGRESS), 0.0);
    assert_eq!(
        m.get(QUIC_CONNECTIONS),
        1.0,
        "only the agent's connection is left in the QUIC endpoint"
    );
    assert_eq!(m.get("horizon_relay_connections_active"), 1.0);
    assert_eq!(
        m.get(r#"horizon_relay_limit{limit="handshakes_in_progress"}"#),
        64.0
    );
    agent.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn connection_limit_counts_authenticated_connections_only() {
    let relay =
        TestRelay::start("server:\n  max_connections: 2\n  max_handshakes_in_progress: 64\n").await;
    let initials = capture_initials(10).await.unwrap();
    let _flood = send_half_open(relay.addr, &initials, 0, 10).await.unwrap();
    scrape_until(&relay, |m| m.get(IN_PROGRESS) == 10.0).await;
    let a = relay.client("a").await;
    let b = relay.client("b").await;
    // The third authenticated connection is over the limit.
    let c = raw_connect(relay.addr, &relay.node_tls("c"), Duration::from_secs(10)).await;
    assert!(c.is_err(), "third connection refused");
    let m = relay.scrape().await;
    assert_eq!(m.get(LIMIT_REFUSED), 1.0);
    assert_eq!(m.get("horizon_relay_connections_active"), 2.0);
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn series_definitions_past_the_byte_bounds_are_refused_and_counted() {
    const STREAM: f64 = 262_144.0;
    const CONNECTION: f64 = 524_288.0;
    let relay = TestRelay::start(
        "limits:\n  max_dictionary_bytes_per_stream: 262144\n  max_dictionary_bytes_per_connection: 524288\n",
    )
    .await;
    let bystander = relay.client("bystander").await;
    let series = relay_series(&bystander);
    assert_eq!(
        send_values(&bystander, series, 0..1).await[0].ack.accepted,
        1
    );

    let hog = raw_connect(relay.addr, &relay.node_tls("hog"), Duration::from_secs(10))
        .await
        .unwrap();
    // Valid series: 32 labels of 1000 bytes, about 33 KB each: 40 of them
    // are 1.3 MB, over the stream's bound. Each batch also has one good point.
    let valid = DefinitionShape {
        labels: 32,
        value_bytes: 1000,
    };
    let mut first = OpenStream::open(&hog).await.unwrap();
    let acks = first
        .exchange(
            (0..8u32).map(move |i| definitions_frame(u64::from(i), 1 + i * 5..6 + i * 5, valid, 0)),
        )
        .await
        .unwrap();
    assert!(
        acks.iter().all(|a| a.accepted == 1),
        "the good point always goes through"
    );
    let refused_after_stream = relay.scrape().await.get(DICTIONARY_FULL);
    assert!(
        refused_after_stream > 0.0,
        "definitions past the stream bound are refused"
    );

    // Points on a refused series say why.
    let mut probe = definitions_frame(
        9,
        1..1,
        DefinitionShape {
            labels: 0,
            value_bytes: 0,
        },
        0,
    );
    if let Some(horizon_shared::proto::agent_frame::Kind::Batch(b)) = &mut probe.kind {
        b.series_ids = vec![0, 40];
        b.time_deltas = vec![0, 0];
        b.values = vec![1.0, 2.0];
    }
    let ack = first
        .exchange(std::iter::once(probe))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((ack.accepted, ack.rejected), (1, 1));
    assert_eq!(ack.rejections[0].reason, RejectReason::Invalid as i32);
    assert!(
        ack.rejections[0]
            .message
            .contains("max_dictionary_bytes_per_stream"),
        "{:?}",
        ack.rejections[0].message
    );

    // Invalid series (100 labels, over the 32 allowed) keep their reason
    // and id, not their labels; thousands of them still reach the bound.
    let invalid = DefinitionShape {
        labels: 100,
        value_bytes: 50,
    };
    let mut second = OpenStream::open(&hog).await.unwrap();
    let acks = second
        .exchange((0..20u32).map(move |i| {
            definitions_frame(100 + u64::from(i), 1 + i * 400..401 + i * 400, invalid, 0)
        }))
        .await
        .unwrap();
    assert!(acks.iter().all(|a| a.accepted == 1));
    // Two full streams hold nearly all of the connection's bound (each
    // stops short of its own by less than a table doubling or a series):
    // of seven definitions on a third stream, at most one fits.
    let before = relay.scrape().await.get(DICTIONARY_FULL);
    let mut third = OpenStream::open(&hog).await.unwrap();
    let acks = third
        .exchange(std::iter::once(definitions_frame(200, 1..8, valid, 0)))
        .await
        .unwrap();
    assert_eq!(acks[0].accepted, 1);

    let m = relay.scrape().await;
    let bytes = m.get("horizon_relay_dictionary_bytes");
    assert!(
        bytes <= CONNECTION + STREAM,
        "dictionaries hold {bytes} bytes: the hog's bound plus the bystander's few series"
    );
    assert!(
        m.get(DICTIONARY_FULL) >= before + 6.0,
        "the third stream's definitions are refused: {} of 7",
        m.get(DICTIONARY_FULL) - before
    );
    assert_eq!(
        m.get(r#"horizon_relay_limit{limit="dictionary_bytes_per_connection"}"#),
        CONNECTION
    );
    // The other agent keeps streaming.
    let acks = send_values(&bystander, series, 1..4).await;
    assert!(acks.iter().all(|a| a.ack.accepted == 1));

    // Closing the connection frees its dictionaries.
    drop((first, second, third));
    hog.close(0u32.into(), b"done");
    let m = scrape_until(&relay, |m| m.get("horizon_relay_dictionary_bytes") < STREAM).await;
    assert!(m.get("horizon_relay_dictionary_bytes") < STREAM);
    bystander.close().await;
    relay.stop().await;
}

const FRAME_BUFFER: &str = "horizon_relay_frame_buffer_bytes";
const FRAME_TIMEOUTS: &str = r#"horizon_relay_stream_errors_total{kind="frame_timeout"}"#;

/// Opens `streams` streams on `conn`, and on each announces a frame of
/// `len` bytes and sends all of it but the last byte. Returns the streams'
/// sending halves (kept open: the frames stay unfinished).
async fn stall_frames(
    conn: &quinn::Connection,
    streams: usize,
    len: u32,
) -> Vec<quinn::SendStream> {
    let mut held = Vec::new();
    for _ in 0..streams {
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.resize(4 + len as usize - 1, 0x0a);
        // Flow control may hold part of it back: write in the background.
        let _ = tokio::time::timeout(Duration::from_millis(200), send.write_all(&bytes)).await;
        held.push(send);
    }
    held
}

#[tokio::test]
async fn frames_being_read_are_bounded_per_connection_and_relay_wide() {
    const FRAME: u32 = 262_144;
    const CONNECTION: f64 = 524_288.0;
    const TOTAL: f64 = 1_048_576.0;
    let relay = TestRelay::start(
        "limits:\n  max_frame_bytes: 262144\n  max_frame_buffer_bytes_per_connection: 524288\n  max_frame_buffer_bytes_total: 1048576\n  frame_read_timeout_secs: 2\n",
    )
    .await;
    let bystander = relay.client("bystander").await;
    let series = relay_series(&bystander);
    assert_eq!(
        send_values(&bystander, series, 0..1).await[0].ack.accepted,
        1
    );

    // One agent announces six full frames and finishes none: only two fit
    // in its connection's bound; the other four are not read at all.
    let first = raw_connect(
        relay.addr,
        &relay.node_tls("hog-1"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let mut stalled = stall_frames(&first, 6, FRAME - 8).await;
    let m = scrape_until(&relay, |m| m.get(FRAME_BUFFER) >= CONNECTION - 16.0).await;
    // Two frames fill the bound; without it all six would be held.
    assert!(
        (2.0 * f64::from(FRAME - 8)..=CONNECTION).contains(&m.get(FRAME_BUFFER)),
        "one connection holds {} bytes of frames, its bound is {CONNECTION}",
        m.get(FRAME_BUFFER)
    );
    assert_eq!(
        m.get(r#"horizon_relay_limit{limit="frame_buffer_bytes_per_connection"}"#),
        CONNECTION
    );

    // Three more agents do the same: together they reach the relay's bound
    // and no further.
    let mut hogs = vec![first];
    for name in ["hog-2", "hog-3", "hog-4"] {
        let conn = raw_connect(relay.addr, &relay.node_tls(name), Duration::from_secs(10))
            .await
            .unwrap();
        stalled.extend(stall_frames(&conn, 6, FRAME - 8).await);
        hogs.push(conn);
    }
    let m = scrape_until(&relay, |m| m.get(FRAME_BUFFER) >= TOTAL - 64.0).await;
    assert!(
        (4.0 * f64::from(FRAME - 8)..=TOTAL).contains(&m.get(FRAME_BUFFER)),
        "frames being read hold {} bytes, over the relay's bound of {TOTAL}",
        m.get(FRAME_BUFFER)
    );

    // The stalled frames time out and are reset with FRAME_TIMEOUT, so the
    // agent that is sending real batches gets through.
    let acks = send_values(&bystander, series, 1..4).await;
    assert!(acks.iter().all(|a| a.ack.accepted == 1));
    let m = relay.scrape().await;
    assert!(m.get(FRAME_TIMEOUTS) >= 4.0, "{}", m.get(FRAME_TIMEOUTS));
    let code = stalled[0].stopped().await.unwrap();
    assert_eq!(
        code,
        Some(horizon_shared::proto::error_code::FRAME_TIMEOUT.into())
    );

    // Closing the connections gives every byte back.
    drop(stalled);
    for conn in hogs {
        conn.close(0u32.into(), b"done");
    }
    let m = scrape_until(&relay, |m| m.get(FRAME_BUFFER) == 0.0).await;
    assert_eq!(m.get(FRAME_BUFFER), 0.0);
    bystander.close().await;
    relay.stop().await;
}

const DICTIONARY_FULL: &str = r#"horizon_relay_stream_errors_total{kind="dictionary_full"}"#;

fn relay_series(c: &horizon_shared::client::Client) -> horizon_shared::client::SeriesId {
    c.series("gpu_util", &[("gpu", "0"), ("model", "H100")])
        .unwrap()
}

#[tokio::test]
async fn above_the_handshake_rate_unvalidated_initials_get_a_retry_and_no_state() {
    // Threshold 0: address validation always on, whatever the rate.
    let relay = TestRelay::start(
        "server:\n  max_handshakes_in_progress: 512\n  handshake_retry_per_sec: 0\n  handshake_timeout_secs: 60\n",
    )
    .await;
    let initials = capture_initials(40).await.unwrap();
    let _flood = send_half_open(relay.addr, &initials, 0, 40).await.unwrap();
    let m = scrape_until(&relay, |m| m.get(RETRIES) == 40.0).await;
    assert_eq!(m.get(RETRIES), 40.0, "every flood Initial got a Retry");
    assert_eq!(m.get(IN_PROGRESS), 0.0, "and started no handshake");
    assert_eq!(m.get("horizon_relay_handshake_address_validation"), 1.0);
    // An agent answers its Retry (quinn does so by itself) and gets in.
    let agent = relay.client("agent").await;
    let s = agent.series("gpu_util", &[]).unwrap();
    let acks = send_values(&agent, s, 0..3).await;
    assert_eq!(acks.iter().map(|a| a.ack.accepted).sum::<u32>(), 3);
    let m = relay.scrape().await;
    assert_eq!(m.get(RETRIES), 41.0, "the agent was retried once");
    assert_eq!(m.get(TIMED_OUT), 0.0);
    agent.close().await;
    relay.stop().await;
}

const FRAME_WAITS: &str = r#"horizon_relay_throttled_batches_total{limit="frame_buffer"}"#;

/// One batch at a time, each awaited: the ack latencies, in seconds.
async fn one_by_one(
    client: &horizon_shared::client::Client,
    series: horizon_shared::client::SeriesId,
    values: std::ops::Range<i32>,
) -> Vec<f64> {
    let mut latencies = Vec::new();
    for v in values {
        let t = std::time::Instant::now();
        let acks = send_values(client, series, v..v + 1).await;
        assert_eq!(acks[0].ack.accepted, 1);
        latencies.push(t.elapsed().as_secs_f64());
    }
    latencies
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_trickling_frames_on_20_connections_holds_only_its_share_and_is_cut() {
    const FRAME: u32 = 4 << 20;
    const NODE_SHARE: f64 = 67_108_864.0;
    // Defaults (16 MiB a connection, a node's share of 64 MiB, 256 MiB in
    // all, 16 KiB/s with 5 s of slack), but room for the attacker's 20
    // connections of one certificate, so that none is replaced.
    let relay = TestRelay::start("server:\n  max_connections_per_node: 32\n").await;
    let honest = relay.client("honest").await;
    let series = relay_series(&honest);
    let baseline = one_by_one(&honest, series, 0..10).await;

    // 20 connections of one certificate, 16 streams each, every stream
    // announcing a 4 MiB frame and sending it one byte a second.
    let tls = relay.node_tls("attacker");
    let stop = tokio_util::sync::CancellationToken::new();
    let mut attackers = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..20 {
        let conn = raw_connect(relay.addr, &tls, Duration::from_secs(10))
            .await
            .unwrap();
        attackers.push(trickle_frames(conn.clone(), 16, FRAME, stop.clone()));
        conns.push(conn);
    }
    // The node's frames take its share, and no more: 16 frames of 4 MiB,
    // not the relay's 256 MiB.
    let m = scrape_until(&relay, |m| {
        m.get(FRAME_BUFFER) >= NODE_SHARE && m.get("horizon_relay_connections_active") == 21.0
    })
    .await;
    assert_eq!(
        m.get(FRAME_BUFFER),
        NODE_SHARE,
        "the attacker holds its share"
    );
    assert_eq!(
        m.get(r#"horizon_relay_limit{limit="frame_buffer_bytes_per_node"}"#),
        NODE_SHARE
    );
    assert_eq!(
        m.get("horizon_relay_connections_active"),
        21.0,
        "every connection served"
    );
    assert_eq!(
        m.get(r#"horizon_relay_connections_replaced_total{reason="per_node_cap"}"#),
        0.0,
        "none replaced"
    );

    // While it holds its share, the other node's batches never wait for
    // frame room: every one is acked, none counted as having waited.
    let attacked = one_by_one(&honest, series, 10..20).await;
    // Nor does a node that connects now: its first batch is read at once.
    let newcomer = relay.client("newcomer").await;
    let first = send_values(&newcomer, relay_series(&newcomer), 0..1).await;
    assert_eq!(first[0].ack.accepted, 1);
    assert_eq!(
        relay.scrape().await.get(FRAME_WAITS),
        0.0,
        "no batch waited for frame room"
    );
    // The attack still holds its share (its waiting streams take the room
    // of the frames that are cut, so it may dip for an instant).
    let m = scrape_until(&relay, |m| {
        m.get(FRAME_BUFFER) >= NODE_SHARE - f64::from(FRAME)
    })
    .await;
    assert!(
        m.get(FRAME_BUFFER) >= NODE_SHARE - f64::from(FRAME),
        "the attack holds {} bytes",
        m.get(FRAME_BUFFER)
    );
    println!(
        "honest ack latency, median: {:.1} ms without the attack, {:.1} ms during it",
        median(baseline) * 1e3,
        median(attacked) * 1e3
    );

    // The trickling frames fall behind the minimum rate and are cut once
    // the slack is spent: every frame that had room (and the ones that take
    // their places after them).
    let m = scrape_until(&relay, |m| m.get(FRAME_TIMEOUTS) >= 16.0).await;
    assert!(m.get(FRAME_TIMEOUTS) >= 16.0, "{}", m.get(FRAME_TIMEOUTS));
    assert!(m.get(FRAME_BUFFER) <= NODE_SHARE);
    // The attacker's next one-byte writes find their streams stopped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let mut codes = Vec::new();
    for a in attackers {
        codes.extend(a.await.unwrap());
    }
    assert!(!codes.is_empty(), "no attacker stream saw its stop");
    assert!(
        codes
            .iter()
            .all(|c| *c == u64::from(horizon_shared::proto::error_code::FRAME_TIMEOUT)),
        "{codes:?}"
    );
    let acks = send_values(&honest, series, 20..23).await;
    assert!(acks.iter().all(|a| a.ack.accepted == 1));
    for conn in conns {
        conn.close(0u32.into(), b"done");
    }
    let m = scrape_until(&relay, |m| m.get(FRAME_BUFFER) == 0.0).await;
    assert_eq!(m.get(FRAME_BUFFER), 0.0);
    honest.close().await;
    newcomer.close().await;
    relay.stop().await;
}
