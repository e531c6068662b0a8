//! Benchmark: the relay's peak RSS while agents announce large frames and
//! never finish them.
//!
//! ```text
//! cargo run -p horizon-e2e --example frame_flood -- bench --connections 50
//! ```
//!
//! `bench` starts a relay in a child process (`relay`, defaults or `--yaml`)
//! with a fresh development PKI. `--connections` agents, each with its own
//! certificate, open `--streams` streams each, and on every stream announce
//! a frame of `--frame-bytes` and send all of it but the last byte. After
//! `--hold-secs` the child's peak and current RSS (`/proc/PID/status`) and
//! the relay's frame-buffer metrics are printed. A relay without a bound on
//! frames being read holds every byte sent; one with it holds at most
//! `limits.max_frame_buffer_bytes_total` of them, plus what QUIC buffers
//! (`server.receive_window_bytes` per connection).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};
use horizon_e2e::flood::raw_connect;
use horizon_shared::devcerts::DevPki;
use horizon_shared::tls::TlsMaterial;

#[derive(Parser, Debug)]
struct Opt {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a relay in a child process and stall frames on it.
    Bench {
        /// Agents (connections), each with its own certificate.
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Streams per connection (the relay's default allows 16).
        #[arg(long, default_value_t = 16)]
        streams: usize,
        /// Announced length of each frame (the default limit is 4 MiB).
        #[arg(long, default_value_t = 4 << 20)]
        frame_bytes: u32,
        /// How long to hold the frames before reading the relay's memory.
        #[arg(long, default_value_t = 3)]
        hold_secs: u64,
        /// Relay configuration (YAML) on top of the defaults.
        #[arg(long, default_value = "")]
        yaml: String,
    },
    /// Run a relay with the PKI in `pki` (the child of `bench`).
    Relay {
        /// Development PKI directory.
        #[arg(long)]
        pki: std::path::PathBuf,
        /// Relay configuration (YAML) on top of the defaults.
        #[arg(long, default_value = "")]
        yaml: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Opt::parse().cmd {
        Cmd::Relay { pki, yaml } => {
            let (paths, _) = DevPki::ensure(&pki)?;
            let relay = horizon_relay::Relay::bind(horizon_e2e::settings(&yaml, &paths)).await?;
            println!(
                "listening {} {}",
                relay.local_addr(),
                relay.metrics_addr().expect("metrics on")
            );
            relay.run(std::future::pending()).await?;
            Ok(())
        }
        Cmd::Bench {
            connections,
            streams,
            frame_bytes,
            hold_secs,
            yaml,
        } => {
            bench(
                connections,
                streams,
                frame_bytes,
                Duration::from_secs(hold_secs),
                &yaml,
            )
            .await
        }
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn bench(
    connections: usize,
    streams: usize,
    frame_bytes: u32,
    hold: Duration,
    yaml: &str,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (paths, _) = DevPki::ensure(dir.path())?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["relay", "--pki"])
        .arg(dir.path())
        .args(["--yaml", yaml])
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let line = lines.next().transpose()?.unwrap_or_default();
    let mut words = line.split_whitespace().skip(1);
    let addr: std::net::SocketAddr = words.next().unwrap_or_default().parse()?;
    let metrics: std::net::SocketAddr = words.next().unwrap_or_default().parse()?;
    let rss_start = status_kib(pid, "VmRSS:");

    let mut frame = frame_bytes.to_be_bytes().to_vec();
    frame.resize(4 + frame_bytes as usize - 1, 0x0a);
    let frame = bytes::Bytes::from(frame);
    let mut conns = Vec::new();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..connections {
        let issued = paths.ca()?.issue_client(&format!("stall-{i}"))?;
        let tls = TlsMaterial::from_pem(&issued.cert_pem, &issued.key_pem, paths.ca()?.cert_pem())?;
        let conn = raw_connect(addr, &tls, Duration::from_secs(10)).await?;
        for _ in 0..streams {
            let (mut send, _recv) = conn.open_bi().await?;
            let frame = frame.clone();
            // Writes what flow control lets through, then holds the stream.
            writers.spawn(async move {
                let _ = send.write_all(&frame).await;
                std::future::pending::<()>().await;
                drop(send);
            });
        }
        conns.push(conn);
    }
    tokio::time::sleep(hold).await;
    let (_, body) = horizon_e2e::http_get(metrics, "/metrics").await;
    let peak = status_kib(pid, "VmHWM:");
    let now = status_kib(pid, "VmRSS:");
    writers.abort_all();
    for c in &conns {
        c.close(0u32.into(), b"done");
    }
    let _ = child.kill();
    let _ = child.wait();

    let announced = connections as f64 * streams as f64 * f64::from(frame_bytes) / 1048576.0;
    println!(
        "{connections} connections x {streams} streams, frames of {:.2} MiB left 1 byte short: {announced:.0} MiB announced",
        f64::from(frame_bytes) / 1048576.0
    );
    println!(
        "relay RSS: start {:.1} MiB, peak {:.1} MiB, after {hold:?} {:.1} MiB",
        rss_start as f64 / 1024.0,
        peak as f64 / 1024.0,
        now as f64 / 1024.0
    );
    for l in body.lines() {
        if !l.starts_with('#') && (l.contains("frame_buffer") || l.contains("connections_active")) {
            println!("  {l}");
        }
    }
    Ok(())
}
