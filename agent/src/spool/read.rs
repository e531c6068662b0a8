//! Handing records out for sending: in order from the oldest unacked one
//! (the cursor), and the newest ones ahead of it (the fresh lane), so that
//! points just collected do not wait behind a backlog.

use super::format::read_record;
use super::options::io_err;
use super::{Record, Spool, SpoolError};
use std::fs::File;

/// Records the fresh lane keeps: the newest ones appended and not yet
/// handed out (older ones are left to the cursor).
pub const FRESH_RECORDS: usize = 16;

impl Spool {
    /// The oldest record appended and not yet handed out by either
    /// [`next_fresh`](Self::next_fresh) or [`next_unsent`](Self::next_unsent),
    /// among the last [`FRESH_RECORDS`] appended; `None` if there is none.
    /// The sender takes these before the backlog.
    pub fn next_fresh(&mut self) -> Option<Record> {
        while let Some(r) = self.fresh.pop_front() {
            if r.seq > self.handed && self.backlog.is_pending(r.seq) {
                self.ahead.insert(r.seq);
                return Some(r);
            }
        }
        None
    }

    /// The next record not yet handed out (unacked records after a restart
    /// first, then new ones) in sequence order, skipping those the fresh lane
    /// handed out, or `None` when everything was handed out.
    pub fn next_unsent(&mut self) -> Result<Option<Record>, SpoolError> {
        loop {
            let Some(idx) = self
                .segments
                .iter()
                .position(|s| s.first_seq == self.cursor.0)
            else {
                // The cursor's segment was deleted: go to the next one.
                match self.segments.iter().find(|s| s.first_seq > self.cursor.0) {
                    Some(s) => {
                        self.cursor = (s.first_seq, 0);
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            let seg = &self.segments[idx];
            if self.cursor.1 >= seg.bytes {
                match self.segments.get(idx + 1) {
                    Some(next) => {
                        self.cursor = (next.first_seq, 0);
                        self.reader = None;
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            if self.reader.as_ref().map(|r| r.0) != Some(seg.first_seq) {
                let f = File::open(&seg.path).map_err(io_err(&seg.path))?;
                self.reader = Some((seg.first_seq, f));
            }
            let (_, file) = self.reader.as_ref().expect("reader was just opened");
            match read_record(file, self.cursor.1, seg.bytes).map_err(io_err(&seg.path))? {
                Some((seq, payload, next)) => {
                    self.cursor.1 = next;
                    self.handed = self.handed.max(seq);
                    while self.fresh.front().is_some_and(|r| r.seq <= seq) {
                        self.fresh.pop_front();
                    }
                    if self.ahead.remove(&seq) | !self.backlog.is_pending(seq) {
                        continue;
                    }
                    return Ok(Some(Record { seq, payload }));
                }
                None => {
                    // Cannot happen for records this process wrote or checked
                    // at open, unless the file was changed under us.
                    tracing::error!(segment = %seg.path.display(), offset = self.cursor.1, "unreadable spool record; skipping the rest of the segment");
                    self.cursor.1 = seg.bytes;
                }
            }
        }
    }
}
