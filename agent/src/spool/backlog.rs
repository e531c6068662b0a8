//! What waits for the relay's ack: one small entry per sequence above the
//! ack watermark (16 bytes each), so the spool can say at any time how many
//! batches, points and bytes are unacked and how old the oldest of those
//! points is, and move the watermark through acks that arrive out of order.

use std::collections::VecDeque;

/// What the spool needs to know of a record's payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordSummary {
    /// Points in the record.
    pub points: u64,
    /// The earliest time of its points (Unix ns); `None` with no points.
    pub oldest_unix_nano: Option<i64>,
}

/// One sequence above the watermark. `bytes == 0` marks a sequence that is
/// acked (or was never written: a gap left by a torn record).
#[derive(Debug, Clone, Copy)]
struct Entry {
    points: u32,
    bytes: u32,
    oldest: i64,
}

const DONE: Entry = Entry {
    points: 0,
    bytes: 0,
    oldest: i64::MAX,
};

/// Unacked records and their totals.
#[derive(Debug)]
pub(super) struct Backlog {
    /// Sequence of `entries[0]`: the watermark + 1.
    first: u64,
    entries: VecDeque<Entry>,
    pub(super) batches: u64,
    pub(super) points: u64,
    pub(super) bytes: u64,
}

/// Unacked records removed from the backlog without an ack.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Dropped {
    pub(super) batches: u64,
    pub(super) points: u64,
}

impl Backlog {
    /// An empty backlog above `watermark`.
    pub(super) fn new(watermark: u64) -> Self {
        Self {
            first: watermark + 1,
            entries: VecDeque::new(),
            batches: 0,
            points: 0,
            bytes: 0,
        }
    }

    /// The watermark: every sequence at or below it is acked.
    pub(super) fn watermark(&self) -> u64 {
        self.first - 1
    }

    /// Adds the unacked record `seq` of `bytes` on disk. Sequences come in
    /// increasing order; one skipped is taken as acked.
    pub(super) fn add(&mut self, seq: u64, bytes: u64, s: RecordSummary) {
        let Some(at) = seq.checked_sub(self.first) else {
            return;
        };
        while (self.entries.len() as u64) < at {
            self.entries.push_back(DONE);
        }
        let e = Entry {
            points: u32::try_from(s.points).unwrap_or(u32::MAX),
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX).max(1),
            oldest: s.oldest_unix_nano.unwrap_or(i64::MAX),
        };
        self.batches += 1;
        self.points += u64::from(e.points);
        self.bytes += u64::from(e.bytes);
        self.entries.push_back(e);
    }

    /// Whether `seq` is waiting for its ack.
    pub(super) fn is_pending(&self, seq: u64) -> bool {
        self.entry(seq).is_some_and(|e| e.bytes > 0)
    }

    fn entry(&self, seq: u64) -> Option<&Entry> {
        let at = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.entries.get(at)
    }

    /// Records the ack of `seq` and moves the watermark over every acked
    /// sequence at the front. Returns false if `seq` was not pending.
    pub(super) fn ack(&mut self, seq: u64) -> bool {
        let Some(at) = seq
            .checked_sub(self.first)
            .and_then(|a| usize::try_from(a).ok())
        else {
            return false;
        };
        let Some(e) = self.entries.get_mut(at) else {
            return false;
        };
        if e.bytes == 0 {
            return false;
        }
        let e = std::mem::replace(e, DONE);
        self.take(e);
        while self.entries.front().is_some_and(|e| e.bytes == 0) {
            self.entries.pop_front();
            self.first += 1;
        }
        true
    }

    /// Moves the watermark to at least `seq` (the records up to it are
    /// gone from disk) and returns the unacked records that went with it.
    pub(super) fn drop_through(&mut self, seq: u64) -> Dropped {
        let mut dropped = Dropped::default();
        while self.first <= seq {
            if let Some(e) = self.entries.pop_front()
                && e.bytes > 0
            {
                dropped.batches += 1;
                dropped.points += u64::from(e.points);
                self.take(e);
            }
            self.first += 1;
        }
        while self.entries.front().is_some_and(|e| e.bytes == 0) {
            self.entries.pop_front();
            self.first += 1;
        }
        dropped
    }

    fn take(&mut self, e: Entry) {
        self.batches -= 1;
        self.points -= u64::from(e.points);
        self.bytes -= u64::from(e.bytes);
    }

    /// The earliest point time of the unacked records (Unix ns).
    pub(super) fn oldest(&self) -> Option<i64> {
        self.entries
            .iter()
            .filter(|e| e.bytes > 0 && e.oldest != i64::MAX)
            .map(|e| e.oldest)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(points: u64, oldest: i64) -> RecordSummary {
        RecordSummary {
            points,
            oldest_unix_nano: Some(oldest),
        }
    }

    #[test]
    fn totals_follow_appends_acks_and_drops() {
        let mut b = Backlog::new(10);
        for seq in 11..=15 {
            b.add(seq, 100, rec(seq, 1000 - i64::try_from(seq).unwrap()));
        }
        assert_eq!((b.batches, b.points, b.bytes), (5, 65, 500));
        assert_eq!(b.oldest(), Some(985));
        // Out of order: the watermark waits for 11.
        assert!(b.ack(15) && b.ack(12));
        assert!(!b.ack(12), "acked twice");
        assert_eq!(b.watermark(), 10);
        assert_eq!((b.batches, b.points), (3, 11 + 13 + 14));
        assert_eq!(b.oldest(), Some(986));
        assert!(b.ack(11));
        assert_eq!(b.watermark(), 12);
        // The segment holding 13 goes: 13 is dropped, 14 stays.
        assert_eq!(
            b.drop_through(13),
            Dropped {
                batches: 1,
                points: 13
            }
        );
        assert_eq!(b.watermark(), 13);
        assert!(b.ack(14));
        // 15 was acked earlier: the watermark passes it.
        assert_eq!(b.watermark(), 15);
        assert_eq!((b.batches, b.points, b.bytes), (0, 0, 0));
        assert_eq!(b.oldest(), None);
    }

    #[test]
    fn a_gap_does_not_hold_the_watermark() {
        let mut b = Backlog::new(0);
        b.add(1, 10, rec(1, 5));
        b.add(4, 10, rec(1, 7));
        assert!(!b.is_pending(2));
        assert!(b.is_pending(4));
        assert!(b.ack(1));
        assert_eq!(b.watermark(), 3);
        assert!(b.ack(4));
        assert_eq!(b.watermark(), 4);
    }
}
