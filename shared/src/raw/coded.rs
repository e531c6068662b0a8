//! String column chunks written from dictionary codes.
//!
//! Parquet's Arrow writer dictionary-encodes a string column by interning
//! every value it is given: it hashes the string and compares it with the
//! one stored, even when the array it reads is itself a dictionary. For a
//! raw object that is the node, metric and relay of every row and the key
//! and value of every label: seven strings a row, about a sixth of the
//! relay's CPU, for names the encoder already holds as codes.
//!
//! [`write_chunk`] writes such a column from codes instead: it numbers the
//! codes in order of first use (as the writer's interner numbers strings),
//! and makes the pages, the levels, the dictionary page, the column
//! metadata and the offset index as parquet's own column writer does: the
//! same RLE / bit-packing choices as its `RleEncoder` ([`Rle`]), the same
//! codec calls, its page writer. The objects are byte for byte those of the
//! Arrow writer: the test `objects_are_the_bytes_the_row_by_row_encoder_wrote`
//! (in `raw/tests.rs`) compares them, so a parquet release that encodes otherwise
//! is noticed (what this writes is valid Parquet either way).
//!
//! Only what raw objects use is covered: Parquet 1.0 data pages, snappy or
//! zstd, no statistics, no bloom filter, a dictionary page of any size (a
//! page per node group, so one write per page and no page-size limit to
//! apply). Of the writer properties given, only the version and the
//! compression are read (and checked): the caller gives those of a raw
//! object's node groups (`grouped_properties` of `raw_writer_properties`),
//! whose other settings are the ones written here.

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// One data page of a coded column.
pub(super) struct CodedPage<'a> {
    /// Rows in the page.
    pub rows: usize,
    /// One code per value present, indexing the chunk's names.
    pub codes: &'a [u32],
    /// The definition and repetition levels, one each per level, for a
    /// column that has them (a label's key or value); `None` for a required
    /// top-level column, whose levels are its rows.
    pub levels: Option<(&'a [i16], &'a [i16])>,
}

/// The column chunk of `descr` holding `pages` in order, each value the
/// string `names[code]`, dictionary-encoded, with `props`' compression:
/// its bytes (dictionary page first) and what
/// `SerializedRowGroupWriter::append_column` takes with them.
pub(super) fn write_chunk<'a>(
    descr: &ColumnDescPtr,
    props: &WriterProperties,
    names: &[impl AsRef<str>],
    pages: impl IntoIterator<Item = CodedPage<'a>>,
) -> Result<(Bytes, ColumnCloseResult)> {
    if props.writer_version() != WriterVersion::PARQUET_1_0 {
        return Err(ParquetError::General(
            "coded columns are written as Parquet 1.0 data pages only".into(),
        ));
    }
    let compression = props.compression(descr.path());
    let page_data = |buf: Vec<u8>| -> Result<(Bytes, usize)> {
        let size = buf.len();
        Ok((compress(compression, buf)?.into(), size))
    };

    // Each code's number in order of first use, and the codes so numbered.
    let mut number = vec![u32::MAX; names.len()];
    let mut used: Vec<u32> = Vec::new();
    let mut indices: Vec<u64> = Vec::new();
    let mut data_pages = Vec::new();
    let mut offsets = OffsetIndexBuilder::new();
    let (mut rows, mut values) = (0u64, 0u64);
    for page in pages {
        indices.clear();
        let mut text_bytes = 0i64;
        for &code in page.codes {
            let n = &mut number[code as usize];
            if *n == u32::MAX {
                *n = used.len() as u32;
                used.push(code);
            }
            indices.push(u64::from(*n));
            text_bytes += names[code as usize].as_ref().len() as i64;
        }
        let mut buf = Vec::new();
        let levels = match page.levels {
            Some((def, rep)) => {
                // Repetition levels first, then definition levels.
                for (levels, max) in [(rep, descr.max_rep_level()), (def, descr.max_def_level())] {
                    // The byte length of the levels' runs, then the runs.
                    let at = buf.len();
                    buf.extend_from_slice(&[0; 4]);
                    let mut rle = Rle::new(bit_width(max as u64), buf);
                    let levels: Vec<u64> = levels.iter().map(|&l| l as u64).collect();
                    rle.put_all(&levels);
                    buf = rle.finish();
                    let len = (buf.len() - at - 4) as u32;
                    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
                }
                def.len()
            }
            None => page.codes.len(),
        };
        // The bit width of the dictionary as it stands at the page's end.
        let width = bit_width(used.len().saturating_sub(1) as u64);
        buf.push(width);
        let mut rle = Rle::new(width, buf);
        rle.put_all(&indices);
        let (data, size) = page_data(rle.finish())?;
        let page_data = Page::DataPage {
            buf: data,
            num_values: levels as u32,
            encoding: Encoding::RLE_DICTIONARY,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        data_pages.push(CompressedPage::new(page_data, size));
        offsets.append_row_count(page.rows as i64);
        offsets.append_unencoded_byte_array_data_bytes(Some(text_bytes));
        rows += page.rows as u64;
        values += levels as u64;
    }

    // The dictionary: each string used, plain (length, then bytes).
    let mut plain = Vec::new();
    for &code in &used {
        let name = names[code as usize].as_ref().as_bytes();
        plain.extend_from_slice(&(name.len() as u32).to_le_bytes());
        plain.extend_from_slice(name);
    }
    let (dict, dict_size) = page_data(plain)?;
    let dict_encoding = props.dictionary_page_encoding();
    let dict_page = Page::DictionaryPage {
        buf: dict,
        num_values: used.len() as u32,
        encoding: dict_encoding,
        is_sorted: false,
    };

    let mut sink = TrackedWrite::new(Vec::new());
    let mut writer = SerializedPageWriter::new(&mut sink);
    let (mut compressed, mut uncompressed) = (0i64, 0i64);
    let spec = writer.write_page(CompressedPage::new(dict_page, dict_size))?;
    compressed += spec.compressed_size as i64;
    uncompressed += spec.uncompressed_size as i64;
    let data_page_offset = spec.bytes_written as i64;
    let page_count = data_pages.len() as i32;
    for page in data_pages {
        let spec = writer.write_page(page)?;
        offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        compressed += spec.compressed_size as i64;
        uncompressed += spec.uncompressed_size as i64;
    }
    writer.close()?;
    let bytes = Bytes::from(sink.into_inner()?);

    let encodings = [Encoding::RLE, dict_encoding, Encoding::RLE_DICTIONARY];
    let metadata = ColumnChunkMetaData::builder(descr.clone())
        .set_compression(compression)
        .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
        .set_page_encoding_stats(vec![
            PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: dict_encoding,
                count: 1,
            },
            PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::RLE_DICTIONARY,
                count: page_count,
            },
        ])
        .set_total_compressed_size(compressed)
        .set_total_uncompressed_size(uncompressed)
        .set_num_values(values as i64)
        .set_data_page_offset(data_page_offset)
        .set_dictionary_page_offset(Some(0))
        .build()?;
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: rows,
        metadata,
        bloom_filter: None,
        column_index: None,
        offset_index: Some(offsets.build()),
    };
    Ok((bytes, close))
}

/// Bits to hold `max`: 0 for 0.
fn bit_width(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

/// `buf` compressed as parquet's codec for `compression` compresses it.
fn compress(compression: Compression, buf: Vec<u8>) -> Result<Vec<u8>> {
    match compression {
        Compression::UNCOMPRESSED => Ok(buf),
        Compression::SNAPPY => {
            let mut out = vec![0; snap::raw::max_compress_len(buf.len())];
            let n = snap::raw::Encoder::new()
                .compress(&buf, &mut out)
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            out.truncate(n);
            Ok(out)
        }
        Compression::ZSTD(level) => zstd::bulk::compress(&buf, level.compression_level())
            .map_err(|e| ParquetError::External(Box::new(e))),
        other => Err(ParquetError::General(format!(
            "coded columns are not written with {other} compression"
        ))),
    }
}

/// Values in a group of the bit-packed form.
const GROUP: usize = 8;
/// A bit-packed run is closed when it would reach this many groups.
const MAX_GROUPS: usize = 64;

/// Parquet's RLE / bit-packing hybrid, with the choices parquet's
/// `RleEncoder` makes (so that the pages are its bytes): values are taken
/// in groups of eight; a group of one value repeated starts an RLE run,
/// which lasts as long as the value does; other groups are bit-packed, up
/// to 63 groups a run; at the end, what is left is an RLE run if it is one
/// value, else a last group padded with zeros.
struct Rle {
    width: u8,
    out: Vec<u8>,
    /// The values of the bit-packed run being gathered.
    pending: Vec<u64>,
    /// The last value, and how many times in a row it came.
    current: u64,
    repeats: usize,
}

impl Rle {
    /// Values of `width` bits (at most 32), written after what `out` holds.
    fn new(width: u8, out: Vec<u8>) -> Self {
        debug_assert!(width <= 32);
        Self {
            width,
            out,
            pending: Vec::new(),
            current: 0,
            repeats: 0,
        }
    }

    fn put(&mut self, value: u64) {
        if self.current == value {
            self.repeats += 1;
            if self.repeats > GROUP {
                // The RLE run goes on.
                return;
            }
        } else {
            if self.repeats >= GROUP {
                self.rle_run();
            }
            self.repeats = 1;
            self.current = value;
        }
        self.pending.push(value);
        if self.pending.len().is_multiple_of(GROUP) {
            self.group_done();
        }
    }

    /// [`Self::put`] of each of `values`, a whole group at a time where it
    /// can (as parquet's `put_batch`, which makes the same runs).
    fn put_all(&mut self, values: &[u64]) {
        let mut i = 0;
        while i < values.len() {
            if self.repeats >= GROUP && values[i] == self.current {
                // The RLE run goes on for as long as the value does.
                let run = values[i..]
                    .iter()
                    .take_while(|&&v| v == self.current)
                    .count();
                self.repeats += run;
                i += run;
                continue;
            }
            if self.repeats < GROUP
                && self.pending.len().is_multiple_of(GROUP)
                && values.len() - i >= GROUP
            {
                // A whole group, with nothing of its own pending.
                let group = &values[i..i + GROUP];
                i += GROUP;
                if group.iter().all(|&v| v == group[0]) {
                    if !self.pending.is_empty() {
                        self.packed_run();
                    }
                    self.current = group[0];
                    self.repeats = GROUP;
                } else {
                    self.pending.extend_from_slice(group);
                    self.current = group[GROUP - 1];
                    self.repeats = 0;
                    if self.pending.len() / GROUP + 1 >= MAX_GROUPS {
                        self.packed_run();
                    }
                }
                continue;
            }
            self.put(values[i]);
            i += 1;
        }
    }

    /// What `out` held, then the runs.
    fn finish(mut self) -> Vec<u8> {
        if !self.pending.is_empty() || self.repeats > 0 {
            let tail = self.pending.len() % GROUP;
            let all_repeat = self.pending.len() == tail && (self.repeats == tail || tail == 0);
            if self.repeats > 0 && all_repeat {
                self.rle_run();
            } else {
                if tail > 0 {
                    self.pending.resize(self.pending.len() + GROUP - tail, 0);
                }
                if !self.pending.is_empty() {
                    self.packed_run();
                }
            }
        }
        self.out
    }

    /// A group of eight is complete: the start of an RLE run if it is one
    /// value repeated, else one more group of the bit-packed run.
    fn group_done(&mut self) {
        if self.repeats >= GROUP {
            self.pending.truncate(self.pending.len() - GROUP);
            if !self.pending.is_empty() {
                self.packed_run();
            }
            return;
        }
        if self.pending.len() / GROUP + 1 >= MAX_GROUPS {
            self.packed_run();
        }
        self.repeats = 0;
    }

    /// Writes the RLE run of `current`: its length (ULEB128, shifted left
    /// by one), then the value in whole bytes.
    fn rle_run(&mut self) {
        let mut header = (self.repeats as u64) << 1;
        loop {
            let byte = (header & 0x7f) as u8;
            header >>= 7;
            if header == 0 {
                self.out.push(byte);
                break;
            }
            self.out.push(byte | 0x80);
        }
        let bytes = usize::from(self.width).div_ceil(8);
        self.out
            .extend_from_slice(&self.current.to_le_bytes()[..bytes]);
        self.pending.clear();
        self.repeats = 0;
    }

    /// Writes the pending groups as a bit-packed run: their count (shifted
    /// left by one, plus one), then the values, `width` bits each, from the
    /// lowest bit up.
    fn packed_run(&mut self) {
        let groups = self.pending.len() / GROUP;
        self.out.push(((groups << 1) | 1) as u8);
        let (mut bits, mut filled) = (0u64, 0u32);
        for &v in &self.pending {
            bits |= v << filled;
            filled += u32::from(self.width);
            while filled >= 8 {
                self.out.push(bits as u8);
                bits >>= 8;
                filled -= 8;
            }
        }
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rle(width: u8, values: &[u64]) -> Vec<u8> {
        let mut r = Rle::new(width, Vec::new());
        for &v in values {
            r.put(v);
        }
        r.finish()
    }

    #[test]
    fn rle_runs_are_the_formats() {
        // The format's own example: 0 to 7 in 3 bits, one bit-packed group.
        assert_eq!(
            rle(3, &(0..8).collect::<Vec<_>>()),
            [0b11, 0b1000_1000, 0b1100_0110, 0b1111_1010]
        );
        // Ten zeros of one bit: an RLE run of 10, the value in one byte.
        assert_eq!(rle(1, &[0; 10]), [10 << 1, 0]);
        // 300 repeats: the run's length takes two bytes (ULEB128 of 600).
        assert_eq!(rle(9, &[257; 300]), [0xd8, 0x04, 0x01, 0x01]);
        // One value of a one-entry dictionary: no bits at all.
        assert_eq!(rle(0, &[0; 5]), [5 << 1]);
        // Nothing.
        assert!(rle(4, &[]).is_empty());
        // Three values, then padding to a group.
        assert_eq!(rle(2, &[1, 2, 3]), [0b11, 0b0011_1001, 0]);
    }

    #[test]
    fn whole_groups_at_a_time_make_the_same_runs() {
        // Runs of every length from 1 to 20 of a few values, after every
        // offset into a group, each way.
        let mut x = 7u64;
        let mut values = Vec::new();
        for _ in 0..2000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let run = 1 + (x >> 40) as usize % 20;
            values.extend(std::iter::repeat_n((x >> 20) % 5, run));
        }
        for skip in 0..GROUP {
            let mut batch = Rle::new(3, Vec::new());
            batch.put_all(&values[..skip]);
            batch.put_all(&values[skip..]);
            assert_eq!(batch.finish(), rle(3, &values), "after {skip}");
        }
    }

    #[test]
    fn a_bit_packed_run_is_cut_before_64_groups() {
        // 64 groups of distinct values: 63 in one run, then 1.
        let values: Vec<u64> = (0..512).map(|v| v % 7).collect();
        let out = rle(3, &values);
        assert_eq!(out[0], (63 << 1) | 1);
        assert_eq!(out[1 + 63 * 3], (1 << 1) | 1);
        assert_eq!(out.len(), 1 + 63 * 3 + 1 + 3);
    }
}
