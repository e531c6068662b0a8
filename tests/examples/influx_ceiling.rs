//! Benchmark: what InfluxDB takes from a direct line-protocol writer, and
//! what the relay's InfluxDB path delivers to it, in one run.
//!
//! ```text
//! cargo run --release -p horizon-e2e --example influx_ceiling -- --server influxd --secs 10
//! cargo run --release -p horizon-e2e --example influx_ceiling -- --server victoria --secs 10
//! ```
//!
//! Both phases write the same shape of points (a metric, `gpu`, `model` and
//! `node` tags, one float) in gzip-compressed requests of 5000 lines.
//! Direct: `--writers` concurrent writers post as fast as the server
//! answers for `--secs`. Relay: a relay in this process (InfluxDB sink on,
//! Parquet to a temporary directory, received acks) is offered by `--nodes`
//! clients what the direct writers achieved (or `--rate`) for `--secs`; its
//! rate is the growth of `influxdb_written_points_total` over the same time. Prints
//! both rates, their ratio, and the relay's drops.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use flate2::Compression;
use flate2::write::GzEncoder;
use horizon_e2e::TestRelay;
use horizon_e2e::servers::{Influx1, Victoria};
use horizon_shared::client::{Batch, Point};
use horizon_shared::clock::unix_nanos_now;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Server {
    /// InfluxDB 1.x, the v1 write API.
    Influxd,
    /// VictoriaMetrics, the v2 write API.
    Victoria,
}

#[derive(Parser, Debug)]
struct Opt {
    /// Which database.
    #[arg(long, value_enum, default_value_t = Server::Influxd)]
    server: Server,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Concurrent writers of the direct phase (the relay's default is 4).
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Clients feeding the relay.
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Points per second offered to the relay, all clients together
    /// (default: what the direct writers achieved, so the database is
    /// offered exactly its ceiling).
    #[arg(long)]
    rate: Option<f64>,
}

/// 5000 lines of line protocol for `writer`, request `n`.
fn body(writer: usize, n: u64) -> Vec<u8> {
    let base = unix_nanos_now();
    let mut s = String::with_capacity(5000 * 90);
    for i in 0..5000u64 {
        let series = i % 400;
        let _ = writeln!(
            &mut s,
            "gpu_util,gpu={},model=H100,node=direct-{writer} value={} {}",
            series,
            (i % 100) as f64,
            base + (n * 5000 + i) as i64
        );
    }
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    let _ = e.write_all(s.as_bytes());
    e.finish().unwrap_or_default()
}

async fn direct(url: String, writers: usize, secs: u64) -> f64 {
    let client = reqwest::Client::new();
    let points = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, url, points, stop) =
            (client.clone(), url.clone(), points.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let gz = body(w, n);
                n += 1;
                let r = client
                    .post(&url)
                    .header("Content-Encoding", "gzip")
                    .body(gz)
                    .send()
                    .await;
                if matches!(&r, Ok(r) if r.status().is_success()) {
                    points.fetch_add(5000, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let done = points.load(Ordering::Relaxed) as f64;
    for t in tasks {
        let _ = t.await;
    }
    done / elapsed
}

async fn through_relay(yaml: &str, nodes: usize, secs: u64, rate: f64) -> (f64, f64, f64) {
    // Each client sends a batch of 1000 points every `tick`.
    let tick = Duration::from_secs_f64(1000.0 * nodes as f64 / rate.max(1.0));
    let relay = TestRelay::start(yaml).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for k in 0..nodes {
        let client = relay.client(&format!("relay-{k}")).await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let series: Vec<_> = (0..400)
                .map(|g| {
                    client
                        .series("gpu_util", &[("gpu", &g.to_string()), ("model", "H100")])
                        .expect("series")
                })
                .collect();
            let mut n = 0i64;
            let mut pending = std::collections::VecDeque::new();
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while !stop.load(Ordering::Relaxed) {
                every.tick().await;
                let base = unix_nanos_now();
                let points = (0..1000)
                    .map(|i| {
                        Point::new(
                            series[(i % 400) as usize],
                            base + n * 1000 + i,
                            (i % 100) as f64,
                        )
                    })
                    .collect();
                n += 1;
                pending.push_back(client.send(Batch { points }).await.expect("send"));
                if pending.len() > 256 {
                    let _ = pending.pop_front().expect("pending").await;
                }
            }
            for p in pending {
                let _ = p.await;
            }
            client.close().await;
        }));
    }
    let written = |m: &horizon_e2e::Metrics| m.get("horizon_relay_influxdb_written_points_total");
    let before = written(&relay.scrape().await);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = written(&relay.scrape().await);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let m = relay.scrape().await;
    let accepted = m.get("horizon_relay_points_accepted_total");
    let dropped = m.get("horizon_relay_influxdb_dropped_points_total");
    relay.stop().await;
    ((after - before) / elapsed, accepted, dropped)
}

#[tokio::main]
async fn main() {
    let opt = Opt::parse();
    let (_influx, _vm, url, yaml) = match opt.server {
        Server::Influxd => {
            let i = Influx1::start("telemetry").await;
            let url = format!("http://{}/write?db=telemetry&precision=ns", i.addr);
            let yaml = format!(
                "ack:\n  mode: received\ninfluxdb:\n  url: http://{}\n  api: v1\n  database: telemetry\n",
                i.addr
            );
            (Some(i), None, url, yaml)
        }
        Server::Victoria => {
            let v = Victoria::start().await;
            let url = format!(
                "http://{}/api/v2/write?org=o&bucket=telemetry&precision=ns",
                v.addr
            );
            let yaml = format!(
                "ack:\n  mode: received\ninfluxdb:\n  url: http://{}\n  api: v2\n  org: o\n  bucket: telemetry\n  token: t\n",
                v.addr
            );
            (None, Some(v), url, yaml)
        }
    };
    let direct_rate = direct(url, opt.writers, opt.secs).await;
    println!(
        "{:?} direct, {} writers: {direct_rate:.0} points/s",
        opt.server, opt.writers
    );
    let offered = opt.rate.unwrap_or(direct_rate);
    let (relay_rate, accepted, dropped) = through_relay(&yaml, opt.nodes, opt.secs, offered).await;
    println!(
        "{:?} through the relay, {} clients offering {offered:.0} points/s: {relay_rate:.0} points/s written ({accepted:.0} accepted, {dropped:.0} dropped for InfluxDB)",
        opt.server, opt.nodes
    );
    println!("ratio relay / direct: {:.2}", relay_rate / direct_rate);
}
