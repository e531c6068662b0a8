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
//! metadata and the offset index as parquet's own column writer does, with
//! parquet's own level and RLE encoders, compression and page writer. The
//! objects are byte for byte those of the Arrow writer: the test
//! `objects_are_the_bytes_the_row_by_row_encoder_wrote` (in `raw`) compares
//! them.
//!
//! Only what raw objects use is covered: Parquet 1.0 data pages, no
//! statistics, no bloom filter, a dictionary page of any size (a page per
//! node group, so one write per page and no page-size limit to apply).

use bytes::Bytes;
use parquet::basic::{Encoding, EncodingMask, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::compression::{CodecOptionsBuilder, create_codec};
use parquet::encodings::levels::LevelEncoder;
use parquet::encodings::rle::RleEncoder;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
use parquet::util::bit_util::num_required_bits;

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
    let mut codec = create_codec(compression, &CodecOptionsBuilder::default().build())?;
    let mut compress = |buf: Vec<u8>| -> Result<(Bytes, usize)> {
        let size = buf.len();
        match codec.as_mut() {
            Some(c) => {
                let mut out = Vec::with_capacity(size);
                c.compress(&buf, &mut out)?;
                Ok((out.into(), size))
            }
            None => Ok((buf.into(), size)),
        }
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
                    let mut encoder = LevelEncoder::v1_streaming(max);
                    encoder.put_with_observer(levels, |_, _| {});
                    buf.extend_from_slice(&encoder.consume());
                }
                def.len()
            }
            None => page.codes.len(),
        };
        // The bit width of the dictionary as it stands at the page's end.
        let width = num_required_bits(used.len().saturating_sub(1) as u64);
        buf.push(width);
        let mut rle = RleEncoder::new_from_buf(width, buf);
        rle.put_batch(&indices);
        let (data, size) = compress(rle.consume())?;
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
    let (dict, dict_size) = compress(plain)?;
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
