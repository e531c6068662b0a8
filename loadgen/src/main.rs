//! `telemetry-loadgen`: load generator for the Horizon telemetry relay. It is
//! a client of the relay (through `horizon_shared::client`), not part of it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
mod generator;
mod report;

use generator::{Certs, LoadSpec};

/// Simulates GPU nodes streaming metrics to a relay (or a load balancer in
/// front of relays) and reports acks, rejections and ack latency.
///
/// With no flags it targets a development relay on this machine
/// (127.0.0.1:5001), issuing one client certificate per simulated node from
/// the development CA in .dev/certs.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Opt {
    /// Relay or load-balancer address (host:port).
    #[arg(long, default_value = "127.0.0.1:5001")]
    addr: String,
    /// Name the relay's certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Simulated nodes, one connection and one certificate each.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Series per node.
    #[arg(long, default_value_t = 100)]
    series: usize,
    /// Target points per second, all nodes together.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Most points per batch (the relay's limits.max_batch_size).
    #[arg(long, default_value_t = 1000)]
    batch_points: usize,
    /// Unacked batches per node. In durable mode it must cover the batches
    /// a node sends during one flush age (parquet.rotation_interval_secs).
    #[arg(long, default_value_t = 512)]
    window: usize,
    /// Node names: this prefix plus an index.
    #[arg(long, default_value = "loadgen-node-")]
    node_prefix: String,
    /// How many of the nodes spray new series (cardinality abuse).
    #[arg(long, default_value_t = 0)]
    spray_nodes: usize,
    /// Distinct series each spraying node cycles through.
    #[arg(long, default_value_t = 50_000)]
    spray_series: usize,
    /// UDP endpoints the nodes share (node i on endpoint i mod N). 0: one
    /// per node, as agents have, each taking a fresh port at a reconnect
    /// (what a balancer hashing source ports needs). A few shared
    /// endpoints spare thousands of nodes about 3 MiB of receive buffer each;
    /// each asks the kernel for an 8 MiB socket receive buffer. Give each at
    /// most about 40 nodes (256 for 10,000): a stalled endpoint stops all of
    /// its nodes' acks at once, as a dead relay would.
    #[arg(long, default_value_t = 0)]
    endpoints: usize,
    /// Development CA directory used to issue node certificates.
    #[arg(long, default_value = ".dev/certs")]
    dev_certs: PathBuf,
    /// Client certificate shared by all simulated nodes (instead of the dev CA).
    #[arg(long, requires_all = ["key", "ca"])]
    cert: Option<PathBuf>,
    /// Key of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// CA that issued the relay's certificate.
    #[arg(long, requires = "cert")]
    ca: Option<PathBuf>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let opt = Opt::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,quinn=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let certs = match (opt.cert, opt.key, opt.ca) {
        (Some(cert), Some(key), Some(ca)) => Certs::Files { cert, key, ca },
        _ => Certs::Dev(opt.dev_certs),
    };
    if !(opt.duration.is_finite() && opt.duration > 0.0) {
        eprintln!("telemetry-loadgen: --duration must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let spec = LoadSpec {
        addr: opt.addr,
        server_name: opt.server_name,
        certs,
        nodes: opt.nodes,
        series: opt.series,
        rate: opt.rate,
        duration: Duration::from_secs_f64(opt.duration),
        batch_points: opt.batch_points,
        window: opt.window,
        node_prefix: opt.node_prefix,
        spray_nodes: opt.spray_nodes,
        spray_series: opt.spray_series,
        endpoints: opt.endpoints,
        flush_timeout: Duration::from_secs(10),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telemetry-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(generator::run(spec)) {
        Ok(report) => {
            if opt.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                print!("{}", report.human());
            }
            if report.nodes_failed > 0 && report.batches_acked == 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("telemetry-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
