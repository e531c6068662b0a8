//! Abuse traffic for tests and benchmarks, on loopback only.
//!
//! - [`capture_initials`] and [`send_half_open`]: half-open QUIC handshakes.
//!   quinn's own client side writes each Initial (a real ClientHello, padded
//!   to 1200 bytes) to a local UDP socket we hold; each captured Initial is
//!   then sent once from its own source port and never followed up, as a
//!   sender without a certificate (or with a spoofed address) would.
//! - [`raw_connect`], [`definitions_frame`] and [`OpenStream`]: one agent
//!   sending frames full of series definitions on its own streams.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use horizon_shared::clock::unix_nanos_now;
use horizon_shared::codec::{self, FrameReader};
use horizon_shared::proto::{
    AgentFrame, BatchAck, Label, MetricBatch, RelayFrame, SeriesDef, agent_frame, relay_frame,
};
use horizon_shared::tls::{TlsMaterial, quic_client_config};
use tokio::net::UdpSocket;

/// Longest the capture waits for one Initial before giving up.
const CAPTURE_WAIT: Duration = Duration::from_secs(5);

/// The destination connection id of a QUIC long-header packet.
fn long_header_dcid(packet: &[u8]) -> Option<&[u8]> {
    if packet.len() < 6 || packet[0] & 0x80 == 0 {
        return None;
    }
    let len = usize::from(packet[5]);
    packet.get(6..6 + len)
}

/// Client TLS material from a CA of its own, that no relay trusts: the
/// flood's ClientHellos are real, but could never finish a handshake.
pub fn untrusted_tls() -> anyhow::Result<TlsMaterial> {
    let ca = horizon_shared::devcerts::DevCa::generate("flood CA (untrusted)")?;
    let issued = ca.issue_client("flood")?;
    Ok(TlsMaterial::from_pem(
        &issued.cert_pem,
        &issued.key_pem,
        ca.cert_pem(),
    )?)
}

/// `count` distinct QUIC Initial packets (one per new connection, each with
/// its own connection id) written by quinn's client side, captured on a
/// loopback socket and never delivered to a server.
pub async fn capture_initials(count: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let sink = UdpSocket::bind("127.0.0.1:0").await?;
    let sink_addr = sink.local_addr()?;
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(quic_client_config(&untrusted_tls()?)?);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(count);
    let mut buf = vec![0u8; 2048];
    for _ in 0..count {
        // Dropping the attempt closes it; its close packet carries the same
        // connection id, so it is skipped below as already seen.
        let _attempt = ep.connect(sink_addr, "localhost")?;
        let deadline = Instant::now() + CAPTURE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (n, _) = tokio::time::timeout(left, sink.recv_from(&mut buf))
                .await
                .map_err(|_| anyhow::anyhow!("no Initial captured within {CAPTURE_WAIT:?}"))??;
            let packet = &buf[..n];
            if let Some(dcid) = long_header_dcid(packet)
                && seen.insert(dcid.to_vec())
            {
                out.push(packet.to_vec());
                break;
            }
        }
    }
    ep.close(0u32.into(), b"");
    Ok(out)
}

/// Half-open handshakes in the air: the sockets that sent them (kept open
/// so the relay's answers land somewhere, and dropped with this).
#[derive(Debug)]
pub struct HalfOpen {
    sockets: Vec<UdpSocket>,
}

impl HalfOpen {
    /// How many were sent.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether none were sent.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

/// Sends each Initial once to `target`, each from a new UDP source port on
/// 127.0.0.1, at most `per_second` a second (0: as fast as possible), and
/// never answers what comes back. `keep` sockets stay open (the rest are
/// closed once they have sent), bounding the file descriptors used.
pub async fn send_half_open(
    target: SocketAddr,
    initials: &[Vec<u8>],
    per_second: u32,
    keep: usize,
) -> anyhow::Result<HalfOpen> {
    anyhow::ensure!(
        target.ip().is_loopback(),
        "half-open floods go to loopback addresses only, not {target}"
    );
    let start = Instant::now();
    let mut sockets = Vec::new();
    for (i, packet) in initials.iter().enumerate() {
        if per_second > 0 {
            let due = start + Duration::from_secs_f64(i as f64 / f64::from(per_second));
            tokio::time::sleep_until(due.into()).await;
        }
        let s = UdpSocket::bind("127.0.0.1:0").await?;
        s.send_to(packet, target).await?;
        if sockets.len() < keep {
            sockets.push(s);
        }
    }
    Ok(HalfOpen { sockets })
}

/// A QUIC connection presenting `tls`, without the agent client (so a test
/// chooses every frame), on its own endpoint.
pub async fn raw_connect(
    addr: SocketAddr,
    tls: &TlsMaterial,
    timeout: Duration,
) -> anyhow::Result<quinn::Connection> {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(quic_client_config(tls)?);
    let connecting = ep.connect(addr, "localhost")?;
    Ok(tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("handshake with {addr} took over {timeout:?}"))??)
}

/// What a definitions frame holds.
#[derive(Debug, Clone, Copy)]
pub struct DefinitionShape {
    /// Labels per series (over `limits.max_labels_per_series`, default 32,
    /// makes each definition invalid).
    pub labels: usize,
    /// Bytes of each label value.
    pub value_bytes: usize,
}

/// A batch defining `ids` (each with `shape`), plus the series `ok_id` as
/// `gpu_util{}` and one point on it, so every batch has a valid point.
pub fn definitions_frame(
    sequence: u64,
    ids: std::ops::Range<u32>,
    shape: DefinitionShape,
    ok_id: u32,
) -> AgentFrame {
    let value = "v".repeat(shape.value_bytes);
    let mut defs: Vec<SeriesDef> = ids
        .map(|id| SeriesDef {
            id,
            metric: "flood_metric".into(),
            labels: (0..shape.labels)
                .map(|k| Label {
                    key: format!("k{k}"),
                    value: format!("{id}-{value}"),
                })
                .collect(),
            metric_type: 0,
        })
        .collect();
    defs.push(SeriesDef {
        id: ok_id,
        metric: "gpu_util".into(),
        labels: vec![],
        metric_type: 0,
    });
    AgentFrame {
        kind: Some(agent_frame::Kind::Batch(MetricBatch {
            sequence,
            series_defs: defs,
            series_ids: vec![ok_id],
            base_time_unix_nano: unix_nanos_now(),
            time_deltas: vec![0],
            values: vec![1.0],
        })),
    }
}

/// A stream of a raw connection, held open so that its series dictionary
/// lives on the relay until it is dropped.
#[derive(Debug)]
pub struct OpenStream {
    send: quinn::SendStream,
    acks: FrameReader<quinn::RecvStream>,
}

impl OpenStream {
    /// Opens a new stream on `conn`.
    pub async fn open(conn: &quinn::Connection) -> anyhow::Result<Self> {
        let (send, recv) = conn.open_bi().await?;
        Ok(Self {
            send,
            acks: FrameReader::new(recv, 1 << 20),
        })
    }

    /// Sends `frames` (written while the acks are read) and returns one ack
    /// per frame, in order. A stream reset by the relay is an error naming
    /// its code.
    pub async fn exchange(
        &mut self,
        frames: impl ExactSizeIterator<Item = AgentFrame>,
    ) -> anyhow::Result<Vec<BatchAck>> {
        let n = frames.len();
        let send = &mut self.send;
        let write = async move {
            for f in frames {
                send.write_all(&codec::encode_to_vec(&f)).await?;
            }
            anyhow::Ok(())
        };
        let reader = &mut self.acks;
        let read = async move {
            let mut acks = Vec::with_capacity(n);
            while acks.len() < n {
                match reader.next::<RelayFrame>().await {
                    Ok(Some(RelayFrame {
                        kind: Some(relay_frame::Kind::Ack(a)),
                    })) => acks.push(a),
                    Ok(Some(_)) => {}
                    Ok(None) => anyhow::bail!("stream ended after {} of {n} acks", acks.len()),
                    Err(e) => {
                        if let codec::FrameError::Io(io) = &e
                            && let Some(quinn::ReadError::Reset(code)) = io
                                .get_ref()
                                .and_then(|inner| inner.downcast_ref::<quinn::ReadError>())
                        {
                            anyhow::bail!(
                                "stream reset with code {code} after {} of {n} acks",
                                acks.len()
                            );
                        }
                        return Err(e.into());
                    }
                }
            }
            anyhow::Ok(acks)
        };
        let (w, r) = tokio::join!(write, read);
        let acks = r?;
        w?;
        Ok(acks)
    }
}

/// A node's slow-frame attack on one connection: `streams` streams, each
/// announcing a frame of `len` bytes and sending its payload one byte a
/// second; a stream the relay stops is replaced at once by a new one that
/// announces again. Runs until `stop` is cancelled; returns the codes the
/// relay stopped streams with.
pub fn trickle_frames(
    conn: quinn::Connection,
    streams: usize,
    len: u32,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..streams {
            let (conn, stop) = (conn.clone(), stop.clone());
            tasks.spawn(async move {
                let mut codes = Vec::new();
                while !stop.is_cancelled() {
                    let opened = tokio::select! {
                        o = conn.open_bi() => o,
                        () = stop.cancelled() => break,
                    };
                    let Ok((mut send, _recv)) = opened else { break };
                    if send.write_all(&len.to_be_bytes()).await.is_err() {
                        break;
                    }
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = stop.cancelled() => return codes,
                        }
                        match send.write_all(&[0x0a]).await {
                            Ok(()) => {}
                            Err(quinn::WriteError::Stopped(code)) => {
                                codes.push(code.into_inner());
                                break;
                            }
                            Err(_) => return codes,
                        }
                    }
                }
                codes
            });
        }
        let mut codes = Vec::new();
        while let Some(r) = tasks.join_next().await {
            codes.extend(r.unwrap_or_default());
        }
        codes
    })
}
