//! Writes the spool an agent would hold after an outage of HOURS: a
//! dcgm-exporter scrape of GPUS GPUs × 60 fields every second and a
//! node_exporter one every 10 s, ending now, in the agent's record format
//! and the default spool options (1 GiB cap, 8 MiB segments). For the
//! catch-up measurement in docs/benchmarks.md.
//!
//!   cargo run --release -p horizon-agent --example spool_backlog -- DIR HOURS [GPUS]

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use horizon_agent::record::{self, sample};
use horizon_agent::spool::{Spool, SpoolOptions, SyncPolicy};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(hours)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: spool_backlog DIR HOURS [GPUS]");
        std::process::exit(2);
    };
    let hours: f64 = hours.parse().expect("HOURS is a number");
    let gpus: u32 = args
        .get(3)
        .map_or(8, |g| g.parse().expect("GPUS is a number"));
    let secs = (hours * 3600.0) as u64;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let opts = SpoolOptions {
        sync: SyncPolicy::Never,
        ..SpoolOptions::default()
    };
    let mut spool = Spool::open(dir.as_ref(), opts, horizon_agent::sink::summarize).unwrap();
    let mut rng = sample::Rng::new(now as u64);
    let started = Instant::now();
    for tick in 0..secs {
        let time = now - (secs - tick) as i64 * 1_000_000_000;
        let pts = sample::dcgm_scrape(gpus, time, tick, &mut rng);
        spool.append(&record::encode(&pts)).unwrap();
        if tick % 10 == 0 {
            let pts = sample::node_scrape(time, tick, &mut rng);
            spool.append(&record::encode(&pts)).unwrap();
        }
    }
    spool.sync().unwrap();
    let st = spool.stats();
    println!(
        "{} records, {} points, {} bytes ({:.1} bytes a point), dropped {} points, written in {:.1} s",
        st.records,
        st.unacked_points,
        st.bytes,
        st.bytes as f64 / st.unacked_points.max(1) as f64,
        st.dropped_points,
        started.elapsed().as_secs_f64()
    );
}
