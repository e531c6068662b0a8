//! The spool's files: segment names, the record framing, the ack
//! watermark file (layout in the parent module's docs).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::options::{SpoolError, io_err};

const HEADER: usize = 8;
pub(super) const SEQ: usize = 8;
/// Records larger than this are refused (and taken as corruption when read).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

pub(super) fn seg_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

pub(super) fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    if sync {
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

pub(super) fn read_watermark(path: &Path) -> Result<u64, SpoolError> {
    match fs::read(path) {
        Ok(b) if b.len() == 12 => {
            let (v, c) = b.split_at(8);
            let crc = u32::from_le_bytes(c.try_into().unwrap_or_default());
            if crc32fast::hash(v) == crc {
                Ok(u64::from_le_bytes(v.try_into().unwrap_or_default()))
            } else {
                tracing::warn!(path = %path.display(), "ack watermark file is corrupt; replaying everything on disk");
                Ok(0)
            }
        }
        Ok(_) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Frames a record (header and body) for `seq`.
pub(super) fn frame(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(HEADER + SEQ + payload.len());
    body.extend_from_slice(&[0; HEADER]);
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(payload);
    let len = u32::try_from(body.len() - HEADER).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(&body[HEADER..]);
    body[..4].copy_from_slice(&len.to_le_bytes());
    body[4..8].copy_from_slice(&crc.to_le_bytes());
    body
}

/// Reads the record at `offset` of `file` (of `size` bytes): `Ok(Some((seq,
/// payload, next offset)))`, `Ok(None)` when the record is torn or corrupt.
pub(super) fn read_record(
    file: &File,
    offset: u64,
    size: u64,
) -> std::io::Result<Option<(u64, Vec<u8>, u64)>> {
    if size.saturating_sub(offset) < HEADER as u64 {
        return Ok(None);
    }
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, offset)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(SEQ..=MAX_RECORD_BYTES).contains(&len) || size - offset - (HEADER as u64) < len as u64 {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    file.read_exact_at(&mut body, offset + HEADER as u64)?;
    if crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    let seq = u64::from_le_bytes(body[..SEQ].try_into().unwrap_or_default());
    body.drain(..SEQ);
    Ok(Some((seq, body, offset + (HEADER + len) as u64)))
}
