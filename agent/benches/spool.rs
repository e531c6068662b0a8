//! Spool throughput: appending batches (as the scraper does) under each
//! sync policy, and replaying them at start (open, read every record,
//! decode). A record is one dcgm-exporter scrape of 480 points.
//!
//!   cargo bench -p horizon-agent --bench spool

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use horizon_agent::record::{self, sample};
use horizon_agent::spool::{Spool, SpoolOptions, SyncPolicy};

/// One dcgm-exporter scrape of 8 GPUs × 60 fields (480 points, its six
/// labels), as the agent spools it: one record.
fn batch() -> Vec<u8> {
    let mut rng = sample::Rng::new(1);
    record::encode(&sample::dcgm_scrape(
        8,
        1_700_000_000_000_000_000,
        1,
        &mut rng,
    ))
}

fn bench(c: &mut Criterion) {
    let payload = batch();
    println!(
        "spool record: {} bytes for 480 points ({:.1} bytes per point, framing included)",
        payload.len() + 16,
        (payload.len() + 16) as f64 / 480.0
    );
    let mut g = c.benchmark_group("spool");
    g.throughput(Throughput::Elements(480));
    g.measurement_time(Duration::from_secs(5));
    for (name, sync) in [
        ("append_sync_never", SyncPolicy::Never),
        (
            "append_sync_interval_1s",
            SyncPolicy::Interval(Duration::from_secs(1)),
        ),
        ("append_sync_every_batch", SyncPolicy::EveryBatch),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = SpoolOptions {
            max_bytes: 256 << 20,
            segment_bytes: 8 << 20,
            sync,
        };
        let mut spool = Spool::open(dir.path(), opts, horizon_agent::sink::summarize).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| spool.append(black_box(&payload)).unwrap())
        });
    }
    // Replay: 100 records (48,000 points) on disk, opened and read back.
    let dir = tempfile::tempdir().unwrap();
    let opts = SpoolOptions {
        max_bytes: 1 << 30,
        segment_bytes: 8 << 20,
        sync: SyncPolicy::Never,
    };
    {
        let mut s = Spool::open(dir.path(), opts, horizon_agent::sink::summarize).unwrap();
        for _ in 0..100 {
            s.append(&payload).unwrap();
        }
    }
    g.throughput(Throughput::Elements(48_000));
    g.bench_function("replay_open_read_decode", |b| {
        b.iter(|| {
            let mut s = Spool::open(dir.path(), opts, horizon_agent::sink::summarize).unwrap();
            let mut n = 0;
            while let Some(r) = s.next_unsent().unwrap() {
                n += record::decode(&r.payload).unwrap().len();
            }
            assert_eq!(n, 48_000);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
