//! The relay's memory as the kernel sees it: a `telemetry-relay` process
//! flooded with valid series definitions of tiny labels, the case where
//! counting only the text once undercounted the heap by more than half.
//! Its resident set (`VmRSS` in `/proc/PID/status`) must grow by at most
//! [`RSS_FACTOR`] times what `horizon_relay_dictionary_bytes` counted, the
//! factor docs/relay.md gives for the dictionaries' bounds. And what an
//! established connection costs, which the relay cannot count (most of it
//! is quinn's): at most [`CONNECTION_KIB`] each.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use horizon_shared::clock::unix_nanos_now;
use horizon_shared::codec::{self, FrameReader};
use horizon_shared::devcerts::DevPki;
use horizon_shared::proto::{AgentFrame, Label, MetricBatch, RelayFrame, SeriesDef, agent_frame};
use horizon_shared::tls::{TlsMaterial, quic_client_config};

/// RSS growth over counted dictionary bytes, at most (docs/relay.md).
const RSS_FACTOR: f64 = 1.25;
/// The flood's dictionary bound (stream and connection): large enough that
/// the growth dominates the process's noise.
const BOUND: usize = 128 << 20;
/// Series defined per frame.
const PER_FRAME: u32 = 2000;

/// A relay process on free loopback ports, with its directory.
struct RelayProcess {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
    metrics_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RelayProcess {
    fn start(limits: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics_port = free_port();
        let config = format!(
            "server:\n  listen_addr: \"127.0.0.1:{port}\"\nsecurity:\n  dev_certs_dir: \"{}\"\n\
             parquet:\n  output_dir: \"{}\"\nack:\n  mode: received\n\
             observability:\n  metrics_port: {metrics_port}\n  metrics_bind: 127.0.0.1\n  log_level: warn\n\
             limits:\n{limits}",
            dir.path().join("certs").display(),
            dir.path().join("objects").display()
        );
        std::fs::write(dir.path().join("relay.yaml"), config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_telemetry-relay"))
            .arg(dir.path().join("relay.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            dir,
            port,
            metrics_port,
        }
    }

    /// A raw QUIC connection as `node`, once the relay is up.
    async fn connect(&self, node: &str) -> quinn::Connection {
        let pki = DevPki::at(&self.dir.path().join("certs"));
        for _ in 0..200 {
            if pki.server_key.exists() {
                let (cert, key) = pki.client(node).unwrap();
                let tls = TlsMaterial::load(&cert, &key, &pki.ca_cert).unwrap();
                let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
                ep.set_default_client_config(quic_client_config(&tls).unwrap());
                let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
                if let Ok(Ok(c)) = tokio::time::timeout(
                    Duration::from_secs(5),
                    ep.connect(addr, "localhost").unwrap(),
                )
                .await
                {
                    return c;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("relay did not come up");
    }

    /// Resident set size now, bytes.
    fn rss(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024.0
    }

    /// One sample of `/metrics`.
    fn metric(&self, name: &str) -> f64 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A label value of one byte, different for each series on some label.
fn one_byte(id: u32, k: u32) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let n = ALPHABET.len() as u32;
    let digit = id / n.pow(k.min(3)) % n;
    char::from(ALPHABET[digit as usize]).to_string()
}

/// A batch defining `ids`, each a valid series of 32 labels with one-byte
/// values, and one point on id 0 (`gpu_util{}`), defined here too.
fn tiny_labels_frame(sequence: u64, ids: std::ops::Range<u32>) -> AgentFrame {
    let mut defs: Vec<SeriesDef> = ids
        .map(|id| SeriesDef {
            id,
            metric: "flood_metric".into(),
            labels: (0..32)
                .map(|k| Label {
                    key: format!("k{k}"),
                    value: one_byte(id, k),
                })
                .collect(),
            ..SeriesDef::default()
        })
        .collect();
    defs.push(SeriesDef {
        id: 0,
        metric: "gpu_util".into(),
        ..SeriesDef::default()
    });
    AgentFrame {
        kind: Some(agent_frame::Kind::Batch(MetricBatch {
            sequence,
            series_defs: defs,
            series_ids: vec![0],
            base_time_unix_nano: unix_nanos_now(),
            time_deltas: vec![0],
            values: vec![1.0],
        })),
    }
}

/// Sends `frames` on a new stream of `conn` while reading their acks; the
/// points accepted, and the stream (its dictionary lives on the relay until
/// it is dropped).
async fn exchange(
    conn: &quinn::Connection,
    frames: Vec<AgentFrame>,
) -> (u32, (quinn::SendStream, FrameReader<quinn::RecvStream>)) {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let n = frames.len();
    let write = async move {
        for f in frames {
            send.write_all(&codec::encode_to_vec(&f)).await.unwrap();
        }
        send
    };
    let read = async move {
        let mut acks = FrameReader::new(recv, 1 << 20);
        let mut accepted = 0;
        for _ in 0..n {
            let frame: RelayFrame = acks.next().await.unwrap().unwrap();
            if let Some(horizon_shared::proto::relay_frame::Kind::Ack(a)) = frame.kind {
                accepted += a.accepted;
            }
        }
        (accepted, acks)
    };
    let (send, (accepted, acks)) = tokio::join!(write, read);
    (accepted, (send, acks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tiny_labels_grows_rss_within_the_documented_factor_of_the_counted_bytes() {
    let relay = RelayProcess::start(&format!(
        "  max_dictionary_bytes_per_stream: {BOUND}\n  max_dictionary_bytes_per_connection: {BOUND}\n"
    ));
    let conn = relay.connect("flood").await;
    // Warm up: the connection, a stream and a first batch, so that what
    // follows is the dictionary.
    let (accepted, _warm) = exchange(&conn, vec![tiny_labels_frame(0, 1..2)]).await;
    assert_eq!(accepted, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_before, counted_before) =
        (relay.rss(), relay.metric("horizon_relay_dictionary_bytes"));

    // Enough definitions to fill the bound (about 3.7 KB counted each);
    // those past it are refused.
    let frames: Vec<AgentFrame> = (0..32u32)
        .map(|i| tiny_labels_frame(u64::from(i) + 1, 2 + i * PER_FRAME..2 + (i + 1) * PER_FRAME))
        .collect();
    let (accepted, _flood) = exchange(&conn, frames).await;
    assert_eq!(accepted, 32, "every good point accepted");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_after, counted_after) = (relay.rss(), relay.metric("horizon_relay_dictionary_bytes"));
    let refused = relay.metric(r#"horizon_relay_stream_errors_total{kind="dictionary_full"}"#);

    let counted = counted_after - counted_before;
    let grew = rss_after - rss_before;
    let mib = |b: f64| b / f64::from(1 << 20);
    println!(
        "counted {:.1} MiB, RSS {:.1} -> {:.1} MiB (+{:.1} MiB): {:.2} x counted; {refused} definitions refused",
        mib(counted),
        mib(rss_before),
        mib(rss_after),
        mib(grew),
        grew / counted
    );
    assert!(refused > 0.0, "the flood reached the bound");
    assert!(
        counted >= 100.0 * f64::from(1 << 20),
        "the flood is large enough to measure: {:.1} MiB counted",
        mib(counted)
    );
    assert!(
        grew <= RSS_FACTOR * counted,
        "RSS grew {:.1} MiB for {:.1} MiB counted: over {RSS_FACTOR} x",
        mib(grew),
        mib(counted)
    );
    // And the count is no wild overestimate: the memory is really there.
    assert!(
        grew >= 0.5 * counted,
        "RSS grew only {:.1} MiB for {:.1} MiB counted",
        mib(grew),
        mib(counted)
    );
    conn.close(0u32.into(), b"done");
}

/// RSS an established connection (one stream, one batch) may cost, KiB:
/// quinn's state and the relay's (docs/relay.md; measured about 70).
const CONNECTION_KIB: f64 = 100.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_established_connection_costs_the_documented_memory() {
    const CONNECTIONS: usize = 300;
    let relay = RelayProcess::start("  max_frame_bytes: 4194304\n");
    // Warm up: one connection with a stream and a batch.
    let first = relay.connect("warm").await;
    let (accepted, _warm) = exchange(&first, vec![tiny_labels_frame(0, 1..2)]).await;
    assert_eq!(accepted, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = relay.rss();
    let mut conns = Vec::new();
    let mut streams = Vec::new();
    for i in 0..CONNECTIONS {
        let conn = relay.connect(&format!("node-{i}")).await;
        let (accepted, stream) = exchange(&conn, vec![tiny_labels_frame(0, 1..2)]).await;
        assert_eq!(accepted, 1);
        streams.push(stream);
        conns.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let active = relay.metric("horizon_relay_connections_active");
    let per = (relay.rss() - rss_before) / CONNECTIONS as f64 / 1024.0;
    println!("{active} connections: {per:.1} KiB of RSS each");
    assert_eq!(active, (CONNECTIONS + 1) as f64);
    assert!(
        per <= CONNECTION_KIB,
        "{per:.1} KiB per connection, over {CONNECTION_KIB}"
    );
}
