//! Benchmark: what InfluxDB takes from a direct line-protocol writer, and
//! what the relay's InfluxDB path delivers to it, in one run.
//!
//! ```text
//! cargo build --release -p horizon-e2e --example influx_ceiling
//! target/release/examples/influx_ceiling --server influxd --secs 10
//! target/release/examples/influx_ceiling --server victoria --secs 10
//! ```
//!
//! Every phase writes the same points to the same database process: on
//! each of `--nodes` nodes, 400 series of `gpu_util` with `gpu`, `model`
//! and `node` tags, one float field `value`, nanosecond timestamps, in
//! batches of 1000 points a node, gzip-compressed requests (level 1) of
//! 5000 lines, 4 requests in flight. The phases, `--secs` each:
//!
//! 1. `direct`: `--writers` writers format and post as fast as the database
//!    answers, each request five nodes' batches. Its rate is the ceiling;
//!    later phases are offered it.
//! 2. `sink`: the relay's InfluxDB sink alone (`sink::influx`, the code
//!    behind `influxdb.*`), fed accepted points in this process by `--nodes`
//!    producers, as the relay's streams feed it. No QUIC, no Parquet: this
//!    is the InfluxDB path's own cost and rate.
//! 3. `relay`: a whole relay in this process (QUIC ingest, Parquet to a
//!    temporary directory, received acks, InfluxDB on), fed by `--nodes`
//!    QUIC clients in this process.
//! 4. `relay, no InfluxDB`: the same relay and load without the InfluxDB
//!    sink, so that the difference in CPU is the InfluxDB path's share.
//! 5. `relay at N %`: the relay offered `--below` of the ceiling; it must
//!    drop nothing.
//!
//! For each phase it prints the points written per second (the growth of
//! the written count over the phase), the points accepted, written and
//! dropped once the phase has drained, and CPU seconds per million points
//! of this process (writers or relay, and its clients) and of the database
//! (`/proc/PID/stat`, utime + stime).

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
use horizon_relay::config::{Config, InfluxSettings};
use horizon_relay::ingest::{AcceptedPoint, SeriesEntry};
use horizon_relay::sink::SinkMetrics;
use horizon_shared::client::{Batch, Point};
use horizon_shared::clock::unix_nanos_now;
use horizon_shared::proto::Label;
use tokio_util::sync::CancellationToken;

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
    /// Producers feeding the sink, clients feeding the relay.
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Points per second offered to the sink and the relay, all producers
    /// together (default: what the direct writers achieved, so the
    /// database is offered exactly its ceiling).
    #[arg(long)]
    rate: Option<f64>,
    /// The share of the offered rate for the last phase.
    #[arg(long, default_value_t = 0.7)]
    below: f64,
    /// Phases to run (default: all).
    #[arg(long, value_delimiter = ',')]
    phases: Vec<String>,
    /// Pin the database to these CPUs (taskset list, e.g. `1`), once it
    /// has started. With `--cpus`, the database and the benchmark's own
    /// side (writers, sink or relay, and their producers or clients) run on
    /// cores of their own, as they would on separate machines.
    #[arg(long)]
    db_cpus: Option<String>,
    /// Pin this process (every thread) to these CPUs (e.g. `0`).
    #[arg(long)]
    cpus: Option<String>,
}

/// Pins every thread of process `pid` to `cpus` with taskset(1).
fn pin(pid: u32, cpus: &str) {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running taskset (util-linux)");
    assert!(
        status.success(),
        "taskset -a -p -c {cpus} {pid} failed: {status}"
    );
}

/// CPU seconds (user + system) of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of stat(5), counted from the state (field 3); the
    // kernel's USER_HZ is 100.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// CPU used by this process and by the database between two readings.
struct CpuMeter {
    db: u32,
    start: (f64, f64),
}

impl CpuMeter {
    fn start(db: u32) -> Self {
        Self {
            db,
            start: (cpu_secs(std::process::id()), cpu_secs(db)),
        }
    }

    fn read(&self) -> (f64, f64) {
        (
            cpu_secs(std::process::id()) - self.start.0,
            cpu_secs(self.db) - self.start.1,
        )
    }
}

/// What one phase measured.
#[derive(Default)]
struct Phase {
    /// Points written per second over the phase.
    rate: f64,
    accepted: f64,
    written: f64,
    dropped: f64,
    /// CPU seconds of this process and of the database over the phase.
    own_cpu: f64,
    db_cpu: f64,
    /// Points written to the database over the phase (for CPU per point).
    points: f64,
    /// Points handled by this process over the phase.
    handled: f64,
}

impl Phase {
    fn print(&self, name: &str, ceiling: f64) {
        let per_m = |cpu: f64, n: f64| if n > 0.0 { cpu / n * 1e6 } else { 0.0 };
        println!(
            "{name:<22} {:>9.0} points/s  ratio {:.2}  accepted {:.0} written {:.0} dropped {:.0}  \
             CPU s per M points: this process {:.2} (of {:.0} points), database {:.2}  \
             (cores: this process {:.2}, database {:.2})",
            self.rate,
            self.rate / ceiling,
            self.accepted,
            self.written,
            self.dropped,
            per_m(self.own_cpu, self.handled),
            self.handled,
            per_m(self.db_cpu, self.points),
            self.own_cpu / self.secs(),
            self.db_cpu / self.secs(),
        );
    }

    fn secs(&self) -> f64 {
        if self.rate > 0.0 {
            self.points / self.rate
        } else {
            1.0
        }
    }
}

/// Request `n` of `writer`: 5000 lines of line protocol, as the sink and
/// the relay phases send them: five batches of 1000 points, each from one
/// of `nodes` nodes, cycling over the 400 series.
fn body(writer: usize, n: u64, nodes: usize) -> Vec<u8> {
    let base = unix_nanos_now();
    let mut s = String::with_capacity(5000 * 90);
    for b in 0..5u64 {
        let node = (writer as u64 + n * 5 + b) % nodes.max(1) as u64;
        for i in 0..1000u64 {
            let _ = writeln!(
                &mut s,
                "gpu_util,gpu={},model=H100,node=direct-{node} value={:?} {}",
                i % 400,
                (i % 100) as f64,
                base + (n * 5000 + b * 1000 + i) as i64
            );
        }
    }
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    let _ = e.write_all(s.as_bytes());
    e.finish().unwrap_or_default()
}

async fn direct(url: String, writers: usize, nodes: usize, secs: u64, db: u32) -> Phase {
    let client = reqwest::Client::new();
    let points = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let cpu = CpuMeter::start(db);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, url, points, stop) =
            (client.clone(), url.clone(), points.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let gz = body(w, n, nodes);
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
    let (own_cpu, db_cpu) = cpu.read();
    let elapsed = started.elapsed().as_secs_f64();
    let done = points.load(Ordering::Relaxed) as f64;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let written = points.load(Ordering::Relaxed) as f64;
    Phase {
        rate: done / elapsed,
        accepted: written,
        written,
        dropped: 0.0,
        own_cpu,
        db_cpu,
        points: done,
        handled: done,
    }
}

/// The 400 series of one producer, as a relay stream's dictionary holds them.
fn series_entries() -> Vec<Arc<SeriesEntry>> {
    (0..400)
        .map(|g| {
            let labels = vec![
                Label {
                    key: "gpu".into(),
                    value: g.to_string(),
                },
                Label {
                    key: "model".into(),
                    value: "H100".into(),
                },
            ];
            Arc::new(SeriesEntry {
                metric: "gpu_util".into(),
                labels: labels.into_boxed_slice(),
                series_hash: g,
                metric_hash: 0,
                metric_type: Default::default(),
                text_bytes: 20,
                line_protocol: Default::default(),
                label_slot: Default::default(),
            })
        })
        .collect()
}

/// The relay's InfluxDB sink alone, offered `rate` points/s by `nodes`
/// producers in batches of 1000.
async fn sink_only(settings: InfluxSettings, nodes: usize, secs: u64, rate: f64, db: u32) -> Phase {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(SinkMetrics::new(&mut registry));
    let closing = CancellationToken::new();
    let (handle, writer) =
        horizon_relay::sink::influx::start(settings, metrics.clone(), closing.clone())
            .expect("InfluxDB sink");
    let writer = tokio::spawn(writer);
    let handle = Arc::new(handle);
    let tick = Duration::from_secs_f64(1000.0 * nodes as f64 / rate.max(1.0));
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start(db);
    let mut tasks = Vec::new();
    for k in 0..nodes {
        let (handle, stop, accepted) = (handle.clone(), stop.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let node: Arc<str> = format!("sink-{k}").into();
            let series = series_entries();
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                every.tick().await;
                let base = unix_nanos_now();
                let points: Vec<AcceptedPoint> = (0..1000)
                    .map(|i| AcceptedPoint {
                        series: series[(i % 400) as usize].clone(),
                        time_unix_nano: base + n * 1000 + i,
                        value: (i % 100) as f64,
                    })
                    .collect();
                n += 1;
                handle.submit(&node, &points);
                accepted.fetch_add(1000, Ordering::Relaxed);
            }
        }));
    }
    let before = metrics.influx_written.get() as f64;
    let handled_before = accepted.load(Ordering::Relaxed) as f64;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (own_cpu, db_cpu) = cpu.read();
    let after = metrics.influx_written.get() as f64;
    let handled = accepted.load(Ordering::Relaxed) as f64 - handled_before;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Let the writer finish what it holds, then close it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.influx_buffered.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    closing.cancel();
    let _ = writer.await;
    Phase {
        rate: (after - before) / elapsed,
        accepted: accepted.load(Ordering::Relaxed) as f64,
        written: metrics.influx_written.get() as f64,
        dropped: metrics.influx_dropped.get() as f64,
        own_cpu,
        db_cpu,
        points: after - before,
        handled,
    }
}

async fn through_relay(yaml: &str, nodes: usize, secs: u64, rate: f64, db: u32) -> Phase {
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
    let accepted = |m: &horizon_e2e::Metrics| m.get("horizon_relay_points_accepted_total");
    let m = relay.scrape().await;
    let (before, accepted_before) = (written(&m), accepted(&m));
    let cpu = CpuMeter::start(db);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (own_cpu, db_cpu) = cpu.read();
    let m = relay.scrape().await;
    let (after, accepted_after) = (written(&m), accepted(&m));
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Let the InfluxDB writer finish what it holds.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = relay.scrape().await;
        if m.get("horizon_relay_influxdb_buffered_points") <= 0.0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = relay.scrape().await;
    relay.stop().await;
    Phase {
        rate: (after - before) / elapsed,
        accepted: accepted(&m),
        written: written(&m),
        dropped: m.get("horizon_relay_influxdb_dropped_points_total"),
        own_cpu,
        db_cpu,
        points: after - before,
        handled: accepted_after - accepted_before,
    }
}

#[tokio::main]
async fn main() {
    let opt = Opt::parse();
    let run = |p: &str| opt.phases.is_empty() || opt.phases.iter().any(|x| x == p);
    let (_influx, _vm, url, yaml, db) = match opt.server {
        Server::Influxd => {
            let i = Influx1::start("telemetry").await;
            let url = format!("http://{}/write?db=telemetry&precision=ns", i.addr);
            let yaml = format!(
                "ack:\n  mode: received\ninfluxdb:\n  url: http://{}\n  api: v1\n  database: telemetry\n",
                i.addr
            );
            let pid = i.pid();
            (Some(i), None, url, yaml, pid)
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
            let pid = v.pid();
            (None, Some(v), url, yaml, pid)
        }
    };
    if let Some(cpus) = &opt.db_cpus {
        pin(db, cpus);
    }
    if let Some(cpus) = &opt.cpus {
        pin(std::process::id(), cpus);
    }
    let settings = Config::from_yaml(&yaml, "benchmark")
        .expect("config")
        .validate()
        .expect("valid config")
        .influxdb
        .expect("InfluxDB settings");
    println!(
        "{:?} (CPUs: database {}, this process {}); requests of {} points or {} bytes, {} in flight; \
         {} writers, {} producers or clients; {} s a phase",
        opt.server,
        opt.db_cpus.as_deref().unwrap_or("any"),
        opt.cpus.as_deref().unwrap_or("any"),
        settings.batch_points,
        settings.batch_bytes,
        settings.max_concurrent_writes,
        opt.writers,
        opt.nodes,
        opt.secs
    );
    let d = direct(url, opt.writers, opt.nodes, opt.secs, db).await;
    d.print("direct", d.rate);
    let ceiling = d.rate;
    let offered = opt.rate.unwrap_or(ceiling);
    println!("offered to the next phases: {offered:.0} points/s");
    if run("sink") {
        let p = sink_only(settings.clone(), opt.nodes, opt.secs, offered, db).await;
        p.print("sink", ceiling);
    }
    if run("relay") {
        let p = through_relay(&yaml, opt.nodes, opt.secs, offered, db).await;
        p.print("relay", ceiling);
    }
    if run("parquet") {
        let parquet_only = "ack:\n  mode: received\n";
        let p = through_relay(parquet_only, opt.nodes, opt.secs, offered, db).await;
        // Nothing goes to the database here: CPU per accepted point.
        println!(
            "{:<22} accepted {:.0}  CPU s per M points: this process {:.2} (of {:.0} points), database {:.2} s in all",
            "relay, no InfluxDB",
            p.accepted,
            p.own_cpu / p.handled.max(1.0) * 1e6,
            p.handled,
            p.db_cpu
        );
    }
    if run("below") {
        let p = through_relay(&yaml, opt.nodes, opt.secs, offered * opt.below, db).await;
        p.print(&format!("relay at {:.0} %", opt.below * 100.0), ceiling);
    }
}
