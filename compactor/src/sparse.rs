//! The parts of an object fetched by ranged reads, readable as a Parquet
//! file as long as only those parts are read (the footer, and the pages
//! or column chunks wanted), and which parts a compactor shard needs.
//! Used to read a shard's pages of a raw object (`transfer.rs`) and to
//! probe committed files for late keys (`probe.rs`).

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use horizon_shared::raw;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
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

// ---- A shard's part of a raw object ------------------------------------
//
// A raw object cut into node groups (`raw::NODE_GROUPS_KEY`) is one row
// group whose rows are ordered by node group, with a data page per group in
// every column. A shard of a power-of-two count covers one range of
// buckets, so one range of rows; it reads the footer, the offset index,
// each column's dictionary page and the data pages that overlap its rows.

/// The rows of an object that can hold nodes of the bucket range, when the
/// object lists its node groups, is one row group and has an offset index
/// for every column; `None`: read it whole.
pub(crate) fn shard_rows(meta: &ParquetMetaData, buckets: &Range<u32>) -> Option<Range<usize>> {
    if meta.num_row_groups() != 1 || offset_index_range(meta).is_none() {
        return None;
    }
    let rows = u64::try_from(meta.row_group(0).num_rows()).ok()?;
    let groups = meta
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|k| k.key == raw::NODE_GROUPS_KEY)?
        .value
        .as_deref()
        .and_then(|v| raw::parse_node_groups(v, rows))?;
    let (mut at, mut first, mut end) = (0usize, None, 0usize);
    for g in &groups {
        if g.buckets.start < buckets.end && buckets.start < g.buckets.end {
            first.get_or_insert(at);
            end = at + g.rows;
        }
        at += g.rows;
    }
    Some(first.map_or(0..0, |first| first..end))
}

/// Where the offset indexes of the object's row group 0 lie (one range
/// from the first to the end of the last; writers put them together after
/// the column chunks), or `None` if a column has none.
pub(crate) fn offset_index_range(meta: &ParquetMetaData) -> Option<Range<u64>> {
    let mut range: Option<Range<u64>> = None;
    for c in meta.row_group(0).columns() {
        let start = u64::try_from(c.offset_index_offset()?).ok()?;
        let end = start.checked_add(u64::try_from(c.offset_index_length()?).ok()?)?;
        range = Some(match range {
            Some(r) => r.start.min(start)..r.end.max(end),
            None => start..end,
        });
    }
    range
}

/// One column chunk's part in a shard's read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnPages {
    /// The dictionary page (from the chunk's start to its first data
    /// page), if the chunk has one.
    pub dictionary: Option<Range<u64>>,
    /// The data pages that overlap the shard's rows, by index.
    pub pages: Range<usize>,
    /// Their bytes (the pages are adjacent).
    pub bytes: Range<u64>,
}

/// The pages of each column of row group 0 that hold `rows`, by the
/// offset index (which must be loaded). The index is checked first: pages
/// in order, inside their column chunk, starting at row 0, at increasing
/// rows below the row group's count. A damaged index is the object's
/// error, like any damaged part.
pub(crate) fn select_pages(
    meta: &ParquetMetaData,
    rows: &Range<usize>,
) -> Result<Vec<ColumnPages>, ParquetError> {
    let group = meta.row_group(0);
    let total = group.num_rows();
    let index = meta
        .page_index()
        .ok_or_else(|| ParquetError::General("the offset index was not read".into()))?;
    let mut out = Vec::with_capacity(group.num_columns());
    for (c, column) in group.columns().iter().enumerate() {
        let bad = |what: &str| ParquetError::General(format!("column {c}: offset index {what}"));
        let pages = index.page_locations(0, c).ok_or_else(|| bad("missing"))?;
        let (start, len) = column.byte_range();
        let chunk_end = start.checked_add(len).ok_or_else(|| bad("past the file"))?;
        let mut prev_end = start;
        let mut prev_row = -1i64;
        for (i, p) in pages.iter().enumerate() {
            let offset = u64::try_from(p.offset).map_err(|_| bad("offset negative"))?;
            let size = u64::try_from(p.compressed_page_size)
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| bad("page size not positive"))?;
            if offset < prev_end || offset + size > chunk_end {
                return Err(bad("page outside its column chunk or out of order"));
            }
            if (i == 0 && p.first_row_index != 0)
                || p.first_row_index <= prev_row
                || p.first_row_index >= total
            {
                return Err(bad("rows out of order"));
            }
            prev_end = offset + size;
            prev_row = p.first_row_index;
        }
        let Some(first) = pages.first() else {
            return Err(bad("empty"));
        };
        let first_offset = first.offset as u64;
        let dictionary = (first_offset > start).then_some(start..first_offset);
        // Page i holds rows first_row_index[i] .. first_row_index[i + 1].
        let page_end = |i: usize| pages.get(i + 1).map_or(total, |p| p.first_row_index) as usize;
        let from = (0..pages.len())
            .find(|&i| page_end(i) > rows.start)
            .unwrap_or(pages.len());
        let to = (from..pages.len())
            .find(|&i| pages[i].first_row_index as usize >= rows.end)
            .unwrap_or(pages.len());
        let bytes = if from < to {
            let last = &pages[to - 1];
            pages[from].offset as u64..last.offset as u64 + last.compressed_page_size as u64
        } else {
            0..0
        };
        out.push(ColumnPages {
            dictionary,
            pages: from..to,
            bytes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use horizon_shared::raw::{RawPoint, encode_raw_objects, node_bucket};
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};

    /// An hour's object of 64 nodes, 20,000 rows: 16 node groups.
    fn grouped_object() -> Bytes {
        let h = 3_600_000_000_000i64 * 490_000;
        let points: Vec<RawPoint> = (0..20_000)
            .map(|i| RawPoint {
                node: format!("node-{}", i % 64),
                metric: format!("m{}", i % 3),
                labels: Vec::new(),
                time: h + i as i64,
                value: i as f64,
                received_at: h,
                metric_type: horizon_shared::proto::MetricType::Gauge,
            })
            .collect();
        encode_raw_objects(&points, "r").unwrap().remove(0).2
    }

    #[test]
    fn a_shard_selects_the_pages_of_its_groups_in_every_column() {
        let bytes = grouped_object();
        let meta = ParquetMetaDataReader::new()
            .with_offset_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&bytes)
            .unwrap();
        let index = offset_index_range(&meta).unwrap();
        assert!(index.end <= bytes.len() as u64);
        // The third quarter of the buckets: groups 8 to 11 of 16.
        let rows = shard_rows(&meta, &(32768..49152)).unwrap();
        let pages = select_pages(&meta, &rows).unwrap();
        assert_eq!(pages.len(), 10, "ten leaf columns");
        for (c, p) in pages.iter().enumerate() {
            assert_eq!(p.pages, 8..12, "column {c}");
            let (start, len) = meta.row_group(0).column(c).byte_range();
            if c == 6 {
                assert_eq!(p.dictionary, None, "value: byte stream split");
            } else {
                assert_eq!(p.dictionary.clone().map(|d| d.start), Some(start));
            }
            let after = p.dictionary.clone().map_or(start, |d| d.end);
            assert!(after <= p.bytes.start && p.bytes.end <= start + len);
        }
        // The rows are those of the shard's nodes, and only those.
        let batches: Vec<_> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let mut r = 0;
        for b in &batches {
            use arrow_array::cast::AsArray;
            let d = b.column(0).as_dictionary::<arrow_array::types::Int32Type>();
            let names = d.values().as_string::<i32>();
            for k in d.keys().values() {
                let bucket = u32::from(node_bucket(names.value(*k as usize)));
                assert_eq!(
                    rows.contains(&r),
                    (32768..49152).contains(&bucket),
                    "row {r}"
                );
                r += 1;
            }
        }
        assert_eq!(r, 20_000);
        // A range within one group (N = 65,536): that group's page.
        let one = shard_rows(&meta, &(32768..32769)).unwrap();
        assert!(one.start == rows.start && one.end < rows.end);
        let pages = select_pages(&meta, &one).unwrap();
        assert!(pages.iter().all(|p| p.pages == (8..9)));
    }

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
