//! Benchmark: the relay's peak RSS while one agent sends series definitions.
//!
//! ```text
//! cargo run --release -p horizon-e2e --example dictionary_flood -- bench --megabytes 500 --kind invalid
//! ```
//!
//! `bench` starts a relay in a child process (`relay`, defaults or `--yaml`)
//! with a fresh development PKI, connects as one agent and sends frames of
//! definitions on one stream, each frame under 4 MiB with one valid point,
//! until `--megabytes` are sent; then it reads the child's peak and current
//! RSS from `/proc/PID/status` and the relay's dictionary metrics.
//! `--kind invalid`: 5,000 labels of 50 bytes per series (invalid, over 32
//! labels), ids 1.. as needed. `--kind valid`: 32 labels of 1,000 bytes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use horizon_e2e::flood::{DefinitionShape, OpenStream, definitions_frame, raw_connect};
use horizon_shared::codec;
use horizon_shared::devcerts::DevPki;
use horizon_shared::tls::TlsMaterial;

#[derive(Parser, Debug)]
struct Opt {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    /// 5,000 labels of 50 bytes: invalid definitions.
    Invalid,
    /// 32 labels of 1,000 bytes: valid definitions.
    Valid,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a relay in a child process and flood it with definitions.
    Bench {
        /// Megabytes of frames to send.
        #[arg(long, default_value_t = 500)]
        megabytes: usize,
        /// What the definitions look like.
        #[arg(long, value_enum, default_value_t = Kind::Invalid)]
        kind: Kind,
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
            megabytes,
            kind,
            yaml,
        } => bench(megabytes, kind, &yaml).await,
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

async fn bench(megabytes: usize, kind: Kind, yaml: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (paths, _) = DevPki::ensure(dir.path())?;
    let issued = paths.ca()?.issue_client("hog")?;
    let tls = TlsMaterial::from_pem(&issued.cert_pem, &issued.key_pem, paths.ca()?.cert_pem())?;

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

    let shape = match kind {
        Kind::Invalid => DefinitionShape {
            labels: 5000,
            value_bytes: 50,
        },
        Kind::Valid => DefinitionShape {
            labels: 32,
            value_bytes: 1000,
        },
    };
    let one = codec::encode_to_vec(&definitions_frame(0, 1..2, shape, 0)).len();
    let per_frame = ((3 << 20) / one).max(1) as u32;
    let frame_bytes = codec::encode_to_vec(&definitions_frame(0, 1..1 + per_frame, shape, 0)).len();
    let frames = (megabytes << 20).div_ceil(frame_bytes) as u32;
    let conn = raw_connect(addr, &tls, Duration::from_secs(10)).await?;
    let sent_bytes = frame_bytes as u64 * u64::from(frames);
    let started = std::time::Instant::now();
    let mut stream = OpenStream::open(&conn).await?;
    let result = stream
        .exchange((0..frames).map(move |i| {
            let first = 1 + (i * per_frame) % 65_000;
            definitions_frame(u64::from(i) + 1, first..first + per_frame, shape, 0)
        }))
        .await;
    let secs = started.elapsed().as_secs_f64();
    let (acks, error) = match result {
        Ok(a) => (a, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let accepted: u32 = acks.iter().map(|a| a.accepted).sum();
    let (_, body) = horizon_e2e::http_get(metrics, "/metrics").await;
    let peak = status_kib(pid, "VmHWM:");
    let now = status_kib(pid, "VmRSS:");
    conn.close(0u32.into(), b"done");
    let _ = child.kill();
    let _ = child.wait();

    println!(
        "kind {kind:?}: {frames} frames of {:.2} MiB ({per_frame} definitions each), {:.0} MiB sent in {secs:.1} s",
        frame_bytes as f64 / 1048576.0,
        sent_bytes as f64 / 1048576.0
    );
    println!(
        "acks {} (valid points accepted {accepted}), stream error {error:?}",
        acks.len()
    );
    println!(
        "relay RSS: start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
        rss_start as f64 / 1024.0,
        peak as f64 / 1024.0,
        now as f64 / 1024.0
    );
    for l in body.lines() {
        if !l.starts_with('#')
            && (l.contains("dictionary") || l.contains("bad_series_def") || l.contains("invalid"))
        {
            println!("  {l}");
        }
    }
    Ok(())
}
