use super::*;
use crate::record::sample::{Rng, dcgm_scrape};
use crate::spool::{SpoolOptions, SyncPolicy};

fn spool(dir: &std::path::Path) -> Spool {
    let opts = SpoolOptions {
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
        sync: SyncPolicy::Never,
    };
    Spool::open(dir, opts, crate::sink::summarize).unwrap()
}

/// Appends `n` scrapes of 8 GPUs (480 points each).
fn scrapes(s: &mut Spool, n: u64, rng: &mut Rng) {
    for t in 0..n {
        let p = dcgm_scrape(8, t as i64, t, rng);
        s.append(&record::encode(&p)).unwrap();
    }
}

fn batch_points(b: &[Record]) -> u64 {
    b.iter().map(|r| record::points_of(&r.payload)).sum()
}

#[test]
fn the_backlog_goes_in_full_batches_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    let mut s = spool(dir.path());
    scrapes(&mut s, 9, &mut rng);
    drop(s);
    // After a restart the fresh lane is empty: all of it is backlog.
    let mut s = spool(dir.path());
    let mut carry = None;
    let mut sizes = Vec::new();
    let mut seqs = Vec::new();
    loop {
        let b = take_batch(&mut s, &mut carry, 1000).unwrap();
        if b.is_empty() {
            break;
        }
        sizes.push(batch_points(&b));
        seqs.extend(b.iter().map(|r| r.seq));
    }
    assert_eq!(sizes, [960, 960, 960, 960, 480]);
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
}

#[test]
fn a_record_larger_than_the_batch_goes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(6);
    let mut s = spool(dir.path());
    scrapes(&mut s, 3, &mut rng);
    drop(s);
    let mut s = spool(dir.path());
    let mut carry = None;
    for seq in 1..=3 {
        let b = take_batch(&mut s, &mut carry, 100).unwrap();
        assert_eq!(b.iter().map(|r| r.seq).collect::<Vec<_>>(), [seq]);
    }
    assert!(take_batch(&mut s, &mut carry, 100).unwrap().is_empty());
}

#[test]
fn fresh_records_go_between_backlog_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(7);
    let mut s = spool(dir.path());
    scrapes(&mut s, 20, &mut rng);
    drop(s);
    let mut s = spool(dir.path());
    let mut carry = None;
    let first = take_batch(&mut s, &mut carry, 1000).unwrap();
    assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    // A scrape arrives while 18 records of backlog wait: it goes next.
    scrapes(&mut s, 1, &mut rng);
    let fresh = take_batch(&mut s, &mut carry, 1000).unwrap();
    assert_eq!(fresh.iter().map(|r| r.seq).collect::<Vec<_>>(), [21]);
    // Then the backlog resumes in full batches and never repeats it.
    let mut rest = Vec::new();
    loop {
        let b = take_batch(&mut s, &mut carry, 1000).unwrap();
        if b.is_empty() {
            break;
        }
        assert!(batch_points(&b) == 960 || b.len() == 1);
        rest.extend(b.iter().map(|r| r.seq));
    }
    assert_eq!(rest, (3..=20).collect::<Vec<_>>());
}
