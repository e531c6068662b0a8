//! Benchmark: the ack latency of agents already connected while a second
//! process floods the relay with new connection attempts (QUIC Initials
//! carrying real ClientHellos, each from its own source port, never
//! followed up), with and without address validation. Loopback only.
//!
//! ```text
//! cargo run --release -p horizon-e2e --example ack_latency_flood -- bench
//! ```
//!
//! For each relay configuration in turn (unprotected: no Retry by rate and
//! the largest handshake bound, so every Initial costs a TLS key exchange;
//! default: Retry above `server.handshake_retry_per_sec` = 100/s), `bench`
//! starts a relay in this process (`ack.mode: received`, so an ack's latency
//! is the relay's own work), connects `--agents` agents that each send a
//! one-point batch and wait for its ack in a loop, measures that latency
//! for `--secs` seconds with no flood, then again while `flood` runs in a
//! child process sending `--rate` Initials a second.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use horizon_e2e::TestRelay;
use horizon_e2e::flood::{
    DefinitionShape, OpenStream, capture_initials, definitions_frame, raw_connect, send_half_open,
};

#[derive(Parser, Debug)]
struct Opt {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Measure ack latency without and with a flood, for each configuration.
    Bench {
        /// Connected agents, each with one batch in flight at a time.
        #[arg(long, default_value_t = 10)]
        agents: usize,
        /// Seconds measured in each phase.
        #[arg(long, default_value_t = 5)]
        secs: u64,
        /// Initials a second the flooding process sends.
        #[arg(long, default_value_t = 3000)]
        rate: u32,
    },
    /// Send Initials to a relay (run by `bench` as its child).
    Flood {
        /// The relay's QUIC address (loopback only).
        #[arg(long)]
        target: SocketAddr,
        /// Initials to send, each from its own source port.
        #[arg(long)]
        initials: usize,
        /// Initials per second.
        #[arg(long)]
        rate: u32,
    },
}

const CONFIGS: [(&str, &str); 2] = [
    (
        "unprotected (no Retry by rate, handshake bound 65536)",
        "server:\n  handshake_retry_per_sec: 4294967295\n  max_handshakes_in_progress: 65536\n",
    ),
    (
        "default (Retry above server.handshake_retry_per_sec = 100/s)",
        "",
    ),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Opt::parse().cmd {
        Cmd::Flood {
            target,
            initials,
            rate,
        } => {
            let packets = capture_initials(initials).await?;
            println!("sending {}", packets.len());
            let _held = send_half_open(target, &packets, rate, 4096).await?;
            println!("sent {}", packets.len());
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        Cmd::Bench { agents, secs, rate } => {
            println!("{agents} agents, {secs} s per phase, flood of {rate} Initials/s");
            for (name, yaml) in CONFIGS {
                let yaml = format!("ack:\n  mode: received\n{yaml}");
                run(name, &yaml, agents, secs, rate).await?;
            }
            Ok(())
        }
    }
}

/// Ack latencies of `agents` agents looping until `stop`.
async fn measure(conns: &[quinn::Connection], secs: u64) -> anyhow::Result<Vec<Duration>> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for conn in conns {
        let (conn, stop) = (conn.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let shape = DefinitionShape {
                labels: 0,
                value_bytes: 0,
            };
            let mut stream = OpenStream::open(&conn).await?;
            let mut out = Vec::new();
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let t = Instant::now();
                stream
                    .exchange(std::iter::once(definitions_frame(seq, 1..1, shape, 0)))
                    .await?;
                out.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok(out)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok(all)
}

fn summary(v: &[Duration]) -> String {
    let q = |p: f64| {
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    format!(
        "{} acks, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    )
}

async fn run(name: &str, yaml: &str, agents: usize, secs: u64, rate: u32) -> anyhow::Result<()> {
    let relay = TestRelay::start(yaml).await;
    let mut conns = Vec::new();
    for i in 0..agents {
        let tls = relay.node_tls(&format!("agent-{i}"));
        conns.push(raw_connect(relay.addr, &tls, Duration::from_secs(10)).await?);
    }
    let quiet = measure(&conns, secs).await?;

    // Enough Initials for the whole phase at the given rate.
    let initials = rate as usize * secs as usize;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "flood",
            "--target",
            &relay.addr.to_string(),
            "--initials",
            &initials.to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    while let Some(line) = rx.recv().await {
        if line.starts_with("sending") {
            break;
        }
    }
    let flooded = measure(&conns, secs).await?;
    let m = relay.scrape().await;
    let _ = child.kill();
    let _ = child.wait();

    println!("{name}");
    println!("  no flood: {}", summary(&quiet));
    println!("  flood:    {}", summary(&flooded));
    for k in [
        "horizon_relay_handshake_retries_total",
        "horizon_relay_handshakes_in_progress",
        "horizon_relay_handshakes_timed_out_total",
        "horizon_relay_handshake_initials_per_second",
        "horizon_relay_quic_connections",
    ] {
        println!("  {k} {}", m.get(k));
    }
    for c in conns {
        c.close(0u32.into(), b"bench");
    }
    relay.stop().await;
    Ok(())
}
