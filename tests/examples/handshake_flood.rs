//! Benchmark: an agent's connect time while a second process floods the
//! relay with half-open QUIC handshakes (Initials sent once from their own
//! source ports, never followed up). Loopback only.
//!
//! ```text
//! cargo run --release -p horizon-e2e --example handshake_flood -- bench --initials 10000
//! ```
//!
//! `bench` starts a relay in this process (defaults, or `--yaml`), times
//! `--samples` agent connects with no flood, then starts `flood` in a child
//! process and times as many connects while its Initials arrive and stay
//! half-open. Times are reported as a ratio to the no-flood median, so a
//! loaded machine shifts both alike.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use horizon_e2e::TestRelay;
use horizon_e2e::flood::{capture_initials, raw_connect, send_half_open};

#[derive(Parser, Debug)]
struct Opt {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a relay, time agent connects without and with a flood.
    Bench {
        /// Half-open Initials the flooding process sends.
        #[arg(long, default_value_t = 10_000)]
        initials: usize,
        /// Agent connects timed in each phase.
        #[arg(long, default_value_t = 20)]
        samples: usize,
        /// Initials sent per second (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Relay configuration (YAML) on top of the defaults.
        #[arg(long, default_value = "")]
        yaml: String,
    },
    /// Send half-open Initials to a relay (run by `bench` as its child).
    Flood {
        /// The relay's QUIC address (loopback only).
        #[arg(long)]
        target: SocketAddr,
        /// Initials to send, each from its own source port.
        #[arg(long, default_value_t = 10_000)]
        initials: usize,
        /// Initials per second (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Seconds to keep the senders' sockets open afterwards.
        #[arg(long, default_value_t = 30)]
        hold_secs: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Opt::parse().cmd {
        Cmd::Flood {
            target,
            initials,
            rate,
            hold_secs,
        } => {
            let packets = capture_initials(initials).await?;
            println!("sending {}", packets.len());
            let _held = send_half_open(target, &packets, rate, 4096).await?;
            println!("sent {}", packets.len());
            tokio::time::sleep(Duration::from_secs(hold_secs)).await;
            Ok(())
        }
        Cmd::Bench {
            initials,
            samples,
            rate,
            yaml,
        } => bench(initials, samples, rate, &yaml).await,
    }
}

/// One agent connect: its time, or why it failed.
async fn connect_once(relay: &TestRelay, node: &str) -> Result<Duration, String> {
    let tls = relay.node_tls(node);
    let t = Instant::now();
    let conn = raw_connect(relay.addr, &tls, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    conn.close(0u32.into(), b"bench");
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

async fn phase(relay: &TestRelay, name: &str, samples: usize) -> (Vec<Duration>, Vec<String>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for i in 0..samples {
        match connect_once(relay, &format!("{name}-{i}")).await {
            Ok(d) => ok.push(d),
            Err(e) => failed.push(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (ok, failed)
}

async fn bench(initials: usize, samples: usize, rate: u32, yaml: &str) -> anyhow::Result<()> {
    let relay = TestRelay::start(yaml).await;
    let (base, base_failed) = phase(&relay, "quiet", samples).await;
    anyhow::ensure!(
        base_failed.is_empty(),
        "connects failed with no flood: {base_failed:?}"
    );
    let base_median = median(base).expect("samples > 0");

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
    let flood_started = Instant::now();
    let (during, failed) = phase(&relay, "flooded", samples).await;
    let phase_secs = flood_started.elapsed().as_secs_f64();
    let sent = rx.recv().await.unwrap_or_default();
    let m = relay.scrape().await;
    let _ = child.kill();
    let _ = child.wait();

    println!("initials: {initials} ({sent}); agent connects per phase: {samples}");
    println!(
        "no flood:  median connect {:.2} ms",
        base_median.as_secs_f64() * 1e3
    );
    match median(during.clone()) {
        Some(d) => println!(
            "flood:     median connect {:.2} ms = {:.2} x no flood; {} of {samples} connected, {} refused or failed ({:.1} s phase)",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() / base_median.as_secs_f64(),
            during.len(),
            failed.len(),
            phase_secs
        ),
        None => println!(
            "flood:     0 of {samples} connected ({:.1} s phase); first error: {}",
            phase_secs,
            failed.first().map_or("", String::as_str)
        ),
    }
    for (k, v) in &m.samples {
        if k.contains("handshake") || k.contains("retr") || k.contains("connections_") {
            println!("  {k} {v}");
        }
    }
    relay.stop().await;
    Ok(())
}
