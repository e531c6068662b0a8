//! The parts of an object fetched by ranged reads, readable as a Parquet
//! file as long as only those parts are read (the footer, and the column
//! chunks of the row groups wanted). Used to read the row groups of a
//! compactor shard from a raw object (`transfer.rs`) and to probe committed
//! files for late keys (`probe.rs`).

use bytes::{Buf, Bytes, BytesMut};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

/// Fetched parts of an object of `len` bytes.
pub(crate) struct Sparse {
    pub len: u64,
    /// (offset, bytes)
    pub parts: Vec<(u64, Bytes)>,
}

impl Sparse {
    /// Adds a part, joining it with a part it touches (so that a read
    /// across their boundary is served).
    pub(crate) fn add(&mut self, offset: u64, bytes: Bytes) {
        let end = offset + bytes.len() as u64;
        if let Some(i) = self.parts.iter().position(|(o, _)| *o == end) {
            let (_, after) = self.parts.remove(i);
            let mut joined = BytesMut::with_capacity(bytes.len() + after.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&after);
            return self.add(offset, joined.freeze());
        }
        if let Some(i) = self
            .parts
            .iter()
            .position(|(o, b)| o + b.len() as u64 == offset)
        {
            let (before_at, before) = self.parts.remove(i);
            let mut joined = BytesMut::with_capacity(before.len() + bytes.len());
            joined.extend_from_slice(&before);
            joined.extend_from_slice(&bytes);
            return self.add(before_at, joined.freeze());
        }
        self.parts.push((offset, bytes));
    }

    fn slice(&self, start: u64, len: Option<usize>) -> Result<Bytes, ParquetError> {
        for (off, b) in &self.parts {
            let end = off + b.len() as u64;
            if start >= *off && start <= end {
                let from = (start - off) as usize;
                let to = match len {
                    Some(l) if from + l <= b.len() => from + l,
                    Some(_) => continue,
                    None => b.len(),
                };
                return Ok(b.slice(from..to));
            }
        }
        Err(ParquetError::General(format!(
            "bytes at {start} (+{len:?}) were not fetched"
        )))
    }
}

impl Length for Sparse {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Sparse {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T, ParquetError> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        self.slice(start, Some(length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_parts_are_joined() {
        let mut s = Sparse {
            len: 10,
            parts: vec![(6, Bytes::from_static(b"ghij"))],
        };
        s.add(0, Bytes::from_static(b"ab"));
        assert!(s.get_bytes(1, 2).is_err(), "2..6 not fetched");
        s.add(2, Bytes::from_static(b"cdef"));
        assert_eq!(s.parts.len(), 1);
        assert_eq!(&s.get_bytes(1, 8).unwrap()[..], b"bcdefghi");
    }
}
