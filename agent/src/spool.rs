//! The durable spool: an append-only log of batches on disk, between the
//! sources and the relay.
//!
//! ## Layout
//! A directory of segment files, `<first sequence, 20 digits>.seg`, and an
//! `ack` file. Each record in a segment is
//!
//! ```text
//! [body length: u32 LE][CRC-32 of body: u32 LE][body: sequence u64 LE, payload]
//! ```
//!
//! Sequences increase by one per record across segments. A segment is
//! closed and a new one started when the next record would take it past
//! `segment_bytes`.
//!
//! The payload is opaque here; the agent's is a [`record`](crate::record),
//! which carries its own format version.
//!
//! ## Handing out
//! [`Spool::next_unsent`] reads records in sequence order from a cursor
//! (after a restart, from the first unacked one). [`Spool::next_fresh`]
//! hands out the newest records appended (kept in memory, at most
//! [`FRESH_RECORDS`]) ahead of the cursor, which then skips them: the
//! sender takes those first, so fresh points do not queue behind a backlog.
//!
//! ## Acks
//! Acks can arrive out of order (the client keeps a window of batches in
//! flight). The *watermark* is the highest sequence at or below which every
//! record is acked; it is written to `ack` (temp file and rename) whenever it
//! moves, and a segment whose last record is at or below it is deleted
//! (unless it is the one being written). The records above it are kept in
//! memory as a [`backlog`](backlog) of a few numbers each: what is unacked,
//! in batches, points and bytes, and the time of its oldest point. At
//! start, records above the watermark are replayed: a record acked out of
//! order just before a crash can be sent twice, which the relay's storage
//! deduplicates at compaction (same node, series and time).
//!
//! ## Crashes
//! At open every segment is read through and each record's length and CRC
//! checked. The first record that is cut short or fails its CRC (a write
//! torn by a crash or power loss) ends the segment: the file is truncated
//! there and the loss counted in [`SpoolStats::torn_records`], so garbage is
//! never replayed.
//!
//! ## Size cap
//! When the segments exceed `max_bytes`, the oldest segment is deleted; the
//! unacked records and points it held are counted exactly
//! ([`SpoolStats::dropped_records`], [`SpoolStats::dropped_points`]) by
//! reading it before it goes. The cap is enforced with segment granularity,
//! so the spool can hold up to one segment more than `max_bytes` briefly.
//!
//! ## Sync policy
//! [`SyncPolicy::EveryBatch`] fsyncs each append (nothing acknowledged by the
//! OS is lost on power loss); [`SyncPolicy::Interval`] at most once per
//! interval (a power loss loses at most that much); [`SyncPolicy::Never`]
//! leaves it to the OS (a process crash loses nothing, a power loss may).

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod backlog;
mod format;
mod options;
mod read;

use backlog::Backlog;
pub use backlog::RecordSummary;
pub use format::MAX_RECORD_BYTES;
use format::{SEQ, frame, read_record, read_watermark, seg_name, write_atomic};
use options::io_err;
pub use options::{SpoolError, SpoolOptions, SyncPolicy};
pub use read::FRESH_RECORDS;

/// Counters and gauges of a spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Bytes in segment files on disk: acked records included until their
    /// segment is deleted (once all of it is acked and it is not the
    /// segment being written).
    pub bytes: u64,
    /// Records in segment files on disk, acked ones included likewise.
    pub segment_records: u64,
    /// Records not yet acked (appended or replayed, not dropped).
    pub records: u64,
    /// Points in those records.
    pub unacked_points: u64,
    /// Bytes of those records in the segment files, framing included.
    pub unacked_bytes: u64,
    /// The earliest time (Unix ns) of a point in those records.
    pub oldest_unacked_unix_nano: Option<i64>,
    /// Records dropped by the size cap before they were acked.
    pub dropped_records: u64,
    /// Points in those records (as counted by the caller's `points` at append).
    pub dropped_points: u64,
    /// Torn or corrupt records cut off at open.
    pub torn_records: u64,
    /// Bytes cut off at open.
    pub torn_bytes: u64,
    /// Records found unacked at open (to be replayed).
    pub replayed_records: u64,
    /// The ack watermark.
    pub watermark: u64,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    last_seq: u64,
    path: PathBuf,
    bytes: u64,
    records: u64,
}

/// A record read back for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number (pass it to [`Spool::ack`]).
    pub seq: u64,
    /// What was appended.
    pub payload: Vec<u8>,
}

/// The spool. Not thread-safe: wrap it in a mutex.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    opts: SpoolOptions,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    next_seq: u64,
    /// The records above the watermark (and the watermark).
    backlog: Backlog,
    /// Next record to hand out: segment's first sequence and byte offset.
    cursor: (u64, u64),
    reader: Option<(u64, File)>,
    /// The highest sequence the cursor handed out.
    handed: u64,
    /// The newest records appended, for the fresh lane.
    fresh: VecDeque<Record>,
    /// Sequences the fresh lane handed out ahead of the cursor.
    ahead: BTreeSet<u64>,
    dirty: bool,
    last_sync: Instant,
    stats: SpoolStats,
    /// Reads a payload's point count and oldest time, for the backlog.
    summarize: fn(&[u8]) -> RecordSummary,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`: checks every segment,
    /// cuts off a torn tail, deletes acked segments, and positions the read
    /// cursor at the first unacked record. `summarize` reads the point
    /// count and oldest time of a payload, for the backlog and the drop
    /// counters.
    pub fn open(
        dir: &Path,
        opts: SpoolOptions,
        summarize: fn(&[u8]) -> RecordSummary,
    ) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let watermark = read_watermark(&dir.join("ack"))?;
        let mut firsts: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".seg")
                && let Ok(first) = stem.parse::<u64>()
            {
                firsts.push((first, path));
            }
        }
        firsts.sort();
        let mut stats = SpoolStats {
            watermark,
            ..SpoolStats::default()
        };
        let mut segments = VecDeque::new();
        let mut backlog = Backlog::new(watermark);
        let mut max_seq = watermark;
        for (first_seq, path) in firsts {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            let size = file.metadata().map_err(io_err(&path))?.len();
            let mut offset = 0;
            let mut records = 0;
            let mut last_seq = first_seq.saturating_sub(1);
            while offset < size {
                match read_record(&file, offset, size).map_err(io_err(&path))? {
                    Some((seq, payload, next)) => {
                        records += 1;
                        last_seq = seq;
                        if seq > watermark {
                            stats.replayed_records += 1;
                            backlog.add(seq, next - offset, summarize(&payload));
                        }
                        offset = next;
                    }
                    None => break,
                }
            }
            if offset < size {
                tracing::warn!(
                    segment = %path.display(),
                    at = offset,
                    cut = size - offset,
                    "torn or corrupt record at the end of a spool segment; cutting it off"
                );
                file.set_len(offset).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
                stats.torn_records += 1;
                stats.torn_bytes += size - offset;
            }
            max_seq = max_seq.max(last_seq);
            if records == 0 || last_seq <= watermark {
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            stats.bytes += offset;
            segments.push_back(Segment {
                first_seq,
                last_seq,
                path,
                bytes: offset,
                records,
            });
        }
        let cursor = segments.front().map_or((0, 0), |s| (s.first_seq, 0));
        Ok(Self {
            dir: dir.to_owned(),
            opts,
            segments,
            writer: None,
            next_seq: max_seq + 1,
            backlog,
            cursor,
            reader: None,
            handed: watermark,
            fresh: VecDeque::new(),
            ahead: BTreeSet::new(),
            dirty: false,
            last_sync: Instant::now(),
            stats,
            summarize,
        })
    }

    /// Counters and gauges (the oldest unacked time takes a pass over the
    /// backlog's entries).
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            watermark: self.backlog.watermark(),
            segment_records: self.segments.iter().map(|s| s.records).sum(),
            records: self.backlog.batches,
            unacked_points: self.backlog.points,
            unacked_bytes: self.backlog.bytes,
            oldest_unacked_unix_nano: self.backlog.oldest(),
            ..self.stats
        }
    }

    /// Appends a record; returns its sequence number. Drops the oldest
    /// segments if the cap is exceeded.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, SpoolError> {
        self.append_summarized(payload, (self.summarize)(payload))
    }

    /// [`append`](Self::append) for a caller that knows the payload's
    /// summary (the sink, which has the points before encoding them).
    pub fn append_summarized(
        &mut self,
        payload: &[u8],
        summary: RecordSummary,
    ) -> Result<u64, SpoolError> {
        if payload.len() + SEQ > MAX_RECORD_BYTES {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        let seq = self.next_seq;
        let rec = frame(seq, payload);
        let roll = match (self.segments.back(), &self.writer) {
            (Some(s), Some(_)) => s.bytes + rec.len() as u64 > self.opts.segment_bytes,
            _ => true,
        };
        if roll {
            self.start_segment(seq)?;
        }
        let seg = self
            .segments
            .back_mut()
            .expect("a segment was just started");
        let w = self.writer.as_mut().expect("a writer was just opened");
        if let Err(e) = w.write_all(&rec) {
            // Leave no partial record behind for the reader.
            let _ = w.set_len(seg.bytes);
            return Err(io_err(&seg.path)(e));
        }
        seg.bytes += rec.len() as u64;
        seg.records += 1;
        seg.last_seq = seq;
        self.next_seq += 1;
        self.stats.bytes += rec.len() as u64;
        self.backlog.add(seq, rec.len() as u64, summary);
        self.fresh.push_back(Record {
            seq,
            payload: payload.to_vec(),
        });
        if self.fresh.len() > FRESH_RECORDS {
            self.fresh.pop_front();
        }
        self.dirty = true;
        match self.opts.sync {
            SyncPolicy::EveryBatch => self.sync()?,
            SyncPolicy::Interval(i) if self.last_sync.elapsed() >= i => self.sync()?,
            _ => {}
        }
        self.enforce_cap()?;
        Ok(seq)
    }

    fn start_segment(&mut self, first_seq: u64) -> Result<(), SpoolError> {
        if self.dirty {
            self.sync()?;
        }
        let path = self.dir.join(seg_name(first_seq));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if self.opts.sync != SyncPolicy::Never {
            // Make the new file's directory entry durable.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.dir))?;
        }
        self.writer = Some(f);
        if self.segments.is_empty() {
            self.cursor = (first_seq, 0);
        }
        self.segments.push_back(Segment {
            first_seq,
            last_seq: first_seq.saturating_sub(1),
            path,
            bytes: 0,
            records: 0,
        });
        Ok(())
    }

    /// Forces appended records to disk.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if let (Some(w), Some(s)) = (&self.writer, self.segments.back()) {
            w.sync_data().map_err(io_err(&s.path))?;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs if the interval policy says it is time (call it periodically).
    pub fn sync_if_due(&mut self) -> Result<(), SpoolError> {
        if let SyncPolicy::Interval(i) = self.opts.sync
            && self.dirty
            && self.last_sync.elapsed() >= i
        {
            self.sync()?;
        }
        Ok(())
    }

    fn enforce_cap(&mut self) -> Result<(), SpoolError> {
        while self.stats.bytes > self.opts.max_bytes && self.segments.len() > 1 {
            let seg = self.segments.pop_front().expect("len > 1");
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            self.stats.bytes -= seg.bytes;
            let before = self.backlog.watermark();
            let dropped = self.backlog.drop_through(seg.last_seq);
            self.fresh.retain(|r| r.seq > seg.last_seq);
            self.ahead.retain(|&s| s > seg.last_seq);
            self.stats.dropped_records += dropped.batches;
            self.stats.dropped_points += dropped.points;
            tracing::warn!(
                records = dropped.batches,
                points = dropped.points,
                segment = %seg.path.display(),
                max_bytes = self.opts.max_bytes,
                "spool is full: dropped its oldest unacked records"
            );
            if self.cursor.0 <= seg.first_seq {
                let next = self.segments.front().map_or(self.next_seq, |s| s.first_seq);
                self.cursor = (next, 0);
                self.reader = None;
            }
            if self.backlog.watermark() != before {
                self.advance_watermark()?;
            }
        }
        Ok(())
    }

    /// Marks a record acked; deletes segments that are fully acked.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        let before = self.backlog.watermark();
        if seq >= self.next_seq || !self.backlog.ack(seq) {
            return Ok(());
        }
        if self.backlog.watermark() != before {
            self.advance_watermark()?;
        }
        Ok(())
    }

    fn advance_watermark(&mut self) -> Result<(), SpoolError> {
        let watermark = self.backlog.watermark();
        let mut b = watermark.to_le_bytes().to_vec();
        b.extend_from_slice(&crc32fast::hash(&b).to_le_bytes());
        write_atomic(
            &self.dir.join("ack"),
            &b,
            self.opts.sync == SyncPolicy::EveryBatch,
        )?;
        // Delete fully acked segments, except the one being written.
        while let Some(front) = self.segments.front() {
            let active = self.segments.len() == 1 && self.writer.is_some();
            if front.last_seq > watermark || front.records == 0 || active {
                break;
            }
            let seg = self.segments.pop_front().expect("front exists");
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            self.stats.bytes -= seg.bytes;
            if self.reader.as_ref().map(|r| r.0) == Some(seg.first_seq) {
                self.reader = None;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
