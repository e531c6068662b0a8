use super::*;

/// A test payload's first byte is its point count, its second its time.
fn points(p: &[u8]) -> RecordSummary {
    RecordSummary {
        points: p.first().copied().unwrap_or(0).into(),
        oldest_unix_nano: p.get(1).map(|t| i64::from(*t)),
    }
}

fn opts(max: u64, seg: u64) -> SpoolOptions {
    SpoolOptions {
        max_bytes: max,
        segment_bytes: seg,
        sync: SyncPolicy::Never,
    }
}

fn drain(s: &mut Spool) -> Vec<Record> {
    std::iter::from_fn(|| s.next_unsent().unwrap()).collect()
}

#[test]
fn appended_records_are_handed_out_once_and_replayed_until_acked() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts(1 << 20, 100), points).unwrap();
    for i in 0..10u8 {
        assert_eq!(s.append(&[i; 20]).unwrap(), u64::from(i) + 1);
    }
    let got = drain(&mut s);
    assert_eq!(got.len(), 10);
    assert_eq!(got[3].payload, vec![3; 20]);
    assert!(s.next_unsent().unwrap().is_none());
    // Acks out of order: 1..=4 and 6 acked, 5 not.
    for seq in [2, 1, 4, 3, 6] {
        s.ack(seq).unwrap();
    }
    assert_eq!(s.stats().watermark, 4);
    assert_eq!(s.stats().records, 5);
    drop(s);
    let mut s = Spool::open(dir.path(), opts(1 << 20, 100), points).unwrap();
    let seqs: Vec<u64> = drain(&mut s).iter().map(|r| r.seq).collect();
    // 6 was acked out of order before the restart: it is sent again.
    assert_eq!(seqs, vec![5, 6, 7, 8, 9, 10]);
    for seq in 5..=10 {
        s.ack(seq).unwrap();
    }
    // Everything acked: only the active segment is left.
    assert!(fs::read_dir(dir.path()).unwrap().count() <= 2);
    assert_eq!(s.append(&[1]).unwrap(), 11);
}

#[test]
fn a_torn_last_record_is_cut_off_and_only_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts(1 << 20, 1 << 20), points).unwrap();
    for i in 0..5u8 {
        s.append(&[i; 100]).unwrap();
    }
    drop(s);
    let seg = dir.path().join(seg_name(1));
    let len = fs::metadata(&seg).unwrap().len();
    // Cut the last record in the middle of its body.
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 50).unwrap();
    drop(f);
    let mut s = Spool::open(dir.path(), opts(1 << 20, 1 << 20), points).unwrap();
    assert_eq!(s.stats().torn_records, 1);
    let got = drain(&mut s);
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(got.iter().all(|r| r.payload.len() == 100));
    // Appending continues after the cut, with the torn sequence reused.
    assert_eq!(s.append(&[9; 3]).unwrap(), 5);
    assert_eq!(drain(&mut s)[0].payload, vec![9; 3]);
}

#[test]
fn a_corrupt_byte_is_detected_by_the_crc() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts(1 << 20, 1 << 20), points).unwrap();
    for i in 0..3u8 {
        s.append(&[i; 10]).unwrap();
    }
    drop(s);
    let seg = dir.path().join(seg_name(1));
    let mut bytes = fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff;
    fs::write(&seg, bytes).unwrap();
    let mut s = Spool::open(dir.path(), opts(1 << 20, 1 << 20), points).unwrap();
    assert_eq!(s.stats().torn_records, 1);
    assert_eq!(drain(&mut s).len(), 2);
}

#[test]
fn a_full_spool_drops_the_oldest_and_counts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // Records of 8 + 8 + 40 = 56 bytes; segments hold 5 (280 of 300
    // bytes); the cap of 1000 bytes holds 3 full segments.
    let o = opts(1000, 300);
    let mut s = Spool::open(dir.path(), o, points).unwrap();
    let n = 100u64;
    for i in 0..n {
        let mut p = vec![0u8; 40];
        p[0] = 7; // seven points per record
        p[1..9].copy_from_slice(&i.to_le_bytes());
        s.append(&p).unwrap();
    }
    let st = s.stats();
    assert!(st.bytes <= 1000 + 300, "{st:?}");
    let kept = drain(&mut s);
    assert_eq!(st.dropped_records + kept.len() as u64, n);
    assert_eq!(st.dropped_points, st.dropped_records * 7);
    assert_eq!(st.records, kept.len() as u64);
    // The newest are kept, in order, without a gap.
    let seqs: Vec<u64> = kept.iter().map(|r| r.seq).collect();
    let expect: Vec<u64> = (n - kept.len() as u64 + 1..=n).collect();
    assert_eq!(seqs, expect);
    // After a restart the same records are there, and no more.
    drop(s);
    let mut s = Spool::open(dir.path(), o, points).unwrap();
    assert_eq!(drain(&mut s).len(), kept.len());
}

#[test]
fn records_sent_before_a_drop_are_not_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts(200, 100), points).unwrap();
    for _ in 0..3 {
        s.append(&[1; 30]).unwrap();
    }
    let first = s.next_unsent().unwrap().unwrap();
    s.ack(first.seq).unwrap();
    for _ in 0..20 {
        s.append(&[1; 30]).unwrap();
    }
    let st = s.stats();
    let rest = drain(&mut s).len() as u64;
    // One acked, the rest either dropped or still to send.
    assert_eq!(1 + st.dropped_records + rest, 23);
}

#[test]
fn the_backlog_counts_what_is_unacked_and_the_files_what_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts(1 << 20, 1 << 20), points).unwrap();
    // Record i holds i points, the oldest at time 100 - i; 20 bytes framed.
    for i in 1..=4u8 {
        s.append(&[i, 100 - i, 0, 0]).unwrap();
    }
    let st = s.stats();
    assert_eq!(
        (st.records, st.unacked_points, st.unacked_bytes),
        (4, 10, 80)
    );
    assert_eq!(st.oldest_unacked_unix_nano, Some(96));
    assert_eq!((st.segment_records, st.bytes), (4, 80));
    drain(&mut s);
    for seq in [4, 1] {
        s.ack(seq).unwrap();
    }
    let st = s.stats();
    assert_eq!(
        (st.records, st.unacked_points, st.unacked_bytes),
        (2, 5, 40)
    );
    assert_eq!(st.oldest_unacked_unix_nano, Some(97));
    // Acked records stay on disk in the segment being written.
    assert_eq!((st.segment_records, st.bytes), (4, 80));
    drop(s);

    // At a restart the backlog is read back: 4 was acked out of order, so
    // it is unacked again.
    let mut s = Spool::open(dir.path(), opts(1 << 20, 1 << 20), points).unwrap();
    let st = s.stats();
    assert_eq!(
        (st.records, st.unacked_points, st.unacked_bytes),
        (3, 9, 60)
    );
    assert_eq!(st.oldest_unacked_unix_nano, Some(96));
    for r in drain(&mut s) {
        s.ack(r.seq).unwrap();
    }
    let st = s.stats();
    assert_eq!((st.records, st.unacked_points, st.unacked_bytes), (0, 0, 0));
    assert_eq!(st.oldest_unacked_unix_nano, None);
    assert_eq!(st.watermark, 4);
}

#[test]
fn dropped_records_leave_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(1000, 300);
    let mut s = Spool::open(dir.path(), o, points).unwrap();
    for i in 0..100u8 {
        let mut p = vec![0u8; 40];
        p[0] = 7;
        p[1] = i;
        s.append(&p).unwrap();
    }
    let st = s.stats();
    assert!(st.dropped_records > 0);
    assert_eq!(st.records, 100 - st.dropped_records);
    assert_eq!(st.unacked_points, st.records * 7);
    assert_eq!(st.unacked_bytes, st.records * 56);
    assert_eq!(
        st.unacked_bytes, st.bytes,
        "nothing acked: all on disk is unacked"
    );
    // The oldest kept record is the first after the dropped ones.
    assert_eq!(
        st.oldest_unacked_unix_nano,
        Some(i64::try_from(st.dropped_records).unwrap())
    );
}

/// A spool an agent of the first record format left behind (written here
/// with that format's encoder) replays after an upgrade, followed by the
/// records the new agent writes; the cap counts both kinds' points.
#[test]
fn a_spool_of_the_first_format_replays_after_an_upgrade() {
    use crate::record::{self, OwnedPoint, sample};
    let dir = tempfile::tempdir().unwrap();
    let mut rng = sample::Rng::new(11);
    let old: Vec<Vec<OwnedPoint>> = (0..5)
        .map(|t| sample::dcgm_scrape(2, 1_000 + t, t as u64, &mut rng))
        .collect();
    {
        let mut s =
            Spool::open(dir.path(), opts(1 << 30, 1 << 20), crate::sink::summarize).unwrap();
        for pts in &old {
            s.append(&record::v1::encode(pts)).unwrap();
        }
        // The first two were acked before the upgrade.
        s.ack(1).unwrap();
        s.ack(2).unwrap();
    }
    let mut s = Spool::open(dir.path(), opts(1 << 30, 1 << 20), crate::sink::summarize).unwrap();
    let st = s.stats();
    assert_eq!((st.replayed_records, st.unacked_points), (3, 3 * 120));
    assert_eq!(st.oldest_unacked_unix_nano, Some(1_002));
    let new = sample::dcgm_scrape(2, 2_000, 9, &mut rng);
    s.append(&record::encode(&new)).unwrap();
    assert_eq!(s.stats().unacked_points, 4 * 120);
    let got: Vec<Vec<OwnedPoint>> = drain(&mut s)
        .iter()
        .map(|r| record::decode(&r.payload).unwrap())
        .collect();
    assert_eq!(got, [&old[2..], &[new][..]].concat());
}

#[test]
fn the_fresh_lane_hands_out_the_newest_records_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts(1 << 20, 1 << 10), points).unwrap();
    for i in 0..40u8 {
        s.append(&[1, i]).unwrap();
    }
    // Only the newest FRESH_RECORDS are kept for the lane, oldest first.
    let first = s.next_fresh().unwrap();
    assert_eq!(first.seq, 40 - FRESH_RECORDS as u64 + 1);
    let second = s.next_fresh().unwrap();
    assert_eq!(second.seq, first.seq + 1);
    // The cursor hands out the rest in order and skips those two.
    let seqs: Vec<u64> = drain(&mut s).iter().map(|r| r.seq).collect();
    let want: Vec<u64> = (1..=40)
        .filter(|q| *q != first.seq && *q != second.seq)
        .collect();
    assert_eq!(seqs, want);
    // What the cursor handed out is not fresh any more.
    assert!(s.next_fresh().is_none());
    s.append(&[1, 99]).unwrap();
    assert_eq!(s.next_fresh().unwrap().seq, 41);
    assert!(s.next_unsent().unwrap().is_none());
    // Handed out is not acked: after a restart all of it replays (41 too,
    // acked above a watermark still at 0).
    s.ack(41).unwrap();
    assert_eq!(s.stats().records, 40);
    drop(s);
    let mut s = Spool::open(dir.path(), opts(1 << 20, 1 << 10), points).unwrap();
    assert_eq!(drain(&mut s).len(), 41);
    assert!(s.next_fresh().is_none(), "nothing is fresh after a restart");
}
