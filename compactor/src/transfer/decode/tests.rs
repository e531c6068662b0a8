use horizon_shared::layout::Hour;
use horizon_shared::proto::{Label, MetricType};
use horizon_shared::raw::{RawPoint, encode_raw_objects};
use parquet::file::metadata::{
    ColumnChunkMetaDataBuilder, ParquetMetaDataReader, ParquetMetaDataWriter,
};

use super::*;

fn raw_object() -> Bytes {
    let hour = 3_600_000_000_000i64 * 490_000;
    let points: Vec<RawPoint> = (0..3)
        .map(|i| RawPoint {
            node: "n1".into(),
            metric: "gpu_util".into(),
            labels: vec![Label {
                key: "gpu".into(),
                value: i.to_string(),
            }],
            time: hour + i,
            value: 1.0,
            received_at: hour + i,
            metric_type: MetricType::Counter,
        })
        .collect();
    encode_raw_objects(&points, "relay-1")
        .expect("encodes")
        .remove(0)
        .2
}

fn unit() -> Unit {
    Unit {
        hour: Hour::of_nanos(0),
        shard: 0,
        shards: 1,
    }
}

/// The object with its footer rewritten so that one column chunk starts at
/// `offset`.
fn with_chunk_offset(bytes: &Bytes, column: usize, offset: i64) -> Bytes {
    with_chunk(bytes, column, |c| {
        c.set_dictionary_page_offset(None)
            .set_data_page_offset(offset)
    })
}

/// The object with one column chunk's footer entry rewritten by `edit`.
fn with_chunk(
    bytes: &Bytes,
    column: usize,
    edit: impl Fn(ColumnChunkMetaDataBuilder) -> ColumnChunkMetaDataBuilder,
) -> Bytes {
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(bytes)
        .expect("footer parses");
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let data_end = bytes.len() - 8 - footer_len as usize;
    let mut builder = meta.into_builder();
    let groups = builder
        .take_row_groups()
        .into_iter()
        .map(|g| {
            let cols = g
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == column {
                        edit(c.clone().into_builder()).build().unwrap()
                    } else {
                        c.clone()
                    }
                })
                .collect();
            g.into_builder().set_column_metadata(cols).build().unwrap()
        })
        .collect();
    let meta = builder.set_row_groups(groups).build();
    let mut out = bytes[..data_end].to_vec();
    ParquetMetaDataWriter::new(&mut out, &meta)
        .finish()
        .unwrap();
    Bytes::from(out)
}

#[test]
fn a_valid_raw_object_decodes() {
    let batches = decode_raw(raw_object(), unit()).unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
}

#[test]
fn a_column_chunk_outside_the_file_is_a_decode_error_not_a_panic() {
    let ok = raw_object();
    // The time column (leaf 5) at a negative offset: the parquet crate
    // asserts on it when the rows are read.
    for offset in [-5, i64::MAX - 1, ok.len() as i64 + 10] {
        let bad = with_chunk_offset(&ok, 5, offset);
        let e = decode_raw(bad, unit()).expect_err("refused");
        assert!(e.to_string().contains("outside the"), "{offset}: {e}");
    }
}

#[test]
fn a_page_the_parquet_reader_panics_on_is_a_decode_error() {
    // Found by the raw_object fuzz target: a data page that says it is
    // dictionary-encoded in a chunk with no dictionary page makes the
    // parquet crate panic ("Decoder for dict should have been set").
    // Rewriting the series_id chunk (leaf column 4) to start at its data
    // page skips its dictionary page while the pages stay dictionary-encoded.
    let ok = raw_object();
    let meta = ParquetMetaDataReader::new().parse_and_finish(&ok).unwrap();
    let col = meta.row_group(0).column(4);
    let dict = col
        .dictionary_page_offset()
        .expect("series_id is dictionary-encoded");
    assert!(col.data_page_offset() > dict);
    let bad = with_chunk_offset(&ok, 4, col.data_page_offset());
    match decode_raw(bad, unit()) {
        Err(DecodeError::ReaderPanic(m)) => assert!(m.contains("dict"), "{m}"),
        other => panic!("expected the reader's panic as a decode error, got {other:?}"),
    }
}

#[test]
fn data_pages_declaring_more_values_than_the_footer_are_refused_before_decoding() {
    // The check compares each chunk's data pages with its footer entry;
    // here the footer is made to say less than the (honest) pages. The
    // time column (leaf 5) has a dictionary of the 3 distinct times and
    // data pages of 3 values; the node column (leaf 0) a dictionary of 1
    // name and data pages of 3 values.
    let ok = raw_object();
    let bad = with_chunk(&ok, 5, |c| c.set_num_values(1));
    let e = decode_raw(bad, unit()).expect_err("refused");
    assert!(
        e.to_string()
            .contains("column 5: its data pages declare 3 values, the footer 1"),
        "{e}"
    );
    let bad = with_chunk(&ok, 0, |c| c.set_num_values(2));
    let e = decode_raw(bad, unit()).expect_err("refused");
    assert!(
        e.to_string()
            .contains("column 0: its data pages declare 3 values, the footer 2"),
        "{e}"
    );
    // The footer's own count is what the check allows.
    let same = with_chunk(&ok, 0, |c| c.set_num_values(3));
    assert_eq!(decode_raw(same, unit()).unwrap()[0].num_rows(), 3);
}

#[test]
fn a_dictionary_declaring_more_entries_than_its_bytes_hold_is_refused_before_decoding() {
    // Found by the raw_object fuzz target: a dictionary page header of a
    // 4 KB object declared 1,883,292,039 values for a 40-row chunk, and the
    // reader allocated over 14 GB for them. The same header here: the time
    // column's dictionary (leaf 5: 3 entries, 24 bytes) made to declare
    // 1,883,292,039.
    let bad = with_dictionary_entries(&raw_object(), 5, 1_883_292_039);
    let e = decode_raw(bad, unit()).expect_err("refused");
    assert!(
        e.to_string()
            .contains("column 5: a dictionary page declares 1883292039 entries in 24 bytes"),
        "{e}"
    );
    // Seven entries in 24 bytes cannot be either (each takes 4 at least).
    let e = decode_raw(with_dictionary_entries(&raw_object(), 5, 7), unit()).expect_err("refused");
    assert!(
        e.to_string().contains("declares 7 entries in 24 bytes"),
        "{e}"
    );
}

/// The object with the dictionary page header of one column chunk made to
/// declare `entries` entries: the chunk is copied, with the header's
/// `num_values` rewritten (its varint may grow), after the data, and the
/// footer points the column at the copy.
fn with_dictionary_entries(bytes: &Bytes, column: usize, entries: i32) -> Bytes {
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(bytes)
        .expect("footer parses");
    let col = meta.row_group(0).column(column);
    let dict = col.dictionary_page_offset().expect("a dictionary page") as usize;
    let data = col.data_page_offset() as usize;
    let (start, len) = col.byte_range();
    assert_eq!(start as usize, dict);
    let chunk = &bytes[dict..dict + len as usize];
    // Thrift compact encoding of the page header: field 7 is the
    // DictionaryPageHeader struct (a field header 0x?C), whose field 1 is
    // num_values, an i32 (0x15) as a zigzag varint.
    let varint = |v: u64| {
        let mut v = v;
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    };
    let zigzag = |n: i32| ((n << 1) ^ (n >> 31)) as u32 as u64;
    let at = (0..40)
        .find(|&i| chunk[i] & 0x0f == 0x0c && chunk[i + 1] == 0x15)
        .expect("the dictionary page header's num_values");
    let old_len = 1 + chunk[at + 2..]
        .iter()
        .take_while(|&&b| b & 0x80 != 0)
        .count();
    let mut copy = chunk[..at + 2].to_vec();
    copy.extend(varint(zigzag(entries)));
    copy.extend_from_slice(&chunk[at + 2 + old_len..]);
    let grown = copy.len() as i64 - len as i64;
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let data_end = bytes.len() - 8 - footer_len as usize;
    let mut out = bytes[..data_end].to_vec();
    let new_dict = out.len() as i64;
    out.extend(copy);
    let moved = Bytes::from([out, bytes[data_end..].to_vec()].concat());
    with_chunk(&moved, column, |c| {
        c.set_dictionary_page_offset(Some(new_dict))
            .set_data_page_offset(new_dict + (data - dict) as i64 + grown)
            .set_total_compressed_size(len as i64 + grown)
    })
}

#[test]
fn a_column_decoded_as_another_type_than_the_schema_says_is_a_decode_error() {
    // Found by the raw_object fuzz target (kept as a seed): a footer whose
    // `metric` column lost its String annotation while the embedded Arrow
    // schema still says string. The reader reports the string schema and
    // decodes binary values, on which the sort's string cast panicked.
    // The first byte picks 4 shards, as the fuzz target reads it.
    let input =
        include_bytes!("../../../../fuzz/seeds/raw_object/metric_not_a_string.parquet.seed");
    let shards = Unit {
        shards: 4,
        ..unit()
    };
    let e = decode_raw(Bytes::from_static(&input[1..]), shards).expect_err("refused");
    assert!(
        e.to_string()
            .contains("column metric decoded as Dictionary(Int32, Binary)"),
        "{e}"
    );
}

/// The rows of `bytes` (one batch), as the Arrow reader gives them.
fn read_batch(bytes: Bytes) -> RecordBatch {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

/// `batch` written as a raw object with the raw writer properties, its
/// schema version in the metadata `version`.
fn write_object(batch: &RecordBatch, version: &str) -> Bytes {
    let props = raw::raw_writer_properties(false)
        .into_builder()
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            raw::SCHEMA_KEY.into(),
            version.to_owned(),
        )]))
        .build();
    let mut buf = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    Bytes::from(buf)
}

fn types(batches: &[RecordBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let d = b
                .column(b.schema().index_of(raw::METRIC_TYPE_COLUMN).unwrap())
                .as_dictionary::<Int32Type>()
                .clone();
            (0..b.num_rows()).map(move |i| {
                let k = d.keys().value(i) as usize;
                d.values().as_string::<i32>().value(k).to_owned()
            })
        })
        .collect()
}

#[test]
fn a_version_1_object_decodes_into_version_2_with_unknown_types() {
    let v2 = read_batch(raw_object());
    assert_eq!(types(std::slice::from_ref(&v2)), ["counter"; 3]);
    let v1 = v2
        .project(&(0..raw::raw_schema_v1().fields().len()).collect::<Vec<_>>())
        .unwrap();
    let batches = decode_raw(write_object(&v1, "1"), unit()).unwrap();
    assert!(batches.iter().all(|b| b.schema() == raw::raw_schema()));
    assert_eq!(types(&batches), ["unknown"; 3]);
    // The other columns as they were.
    let got = arrow_select::concat::concat_batches(&raw::raw_schema(), &batches).unwrap();
    for c in 0..v1.num_columns() {
        assert_eq!(got.column(c), v1.column(c), "column {c}");
    }
    // A version-2 object keeps its types.
    assert_eq!(
        types(&decode_raw(raw_object(), unit()).unwrap()),
        ["counter"; 3]
    );
}

#[test]
fn a_metric_type_that_is_not_one_of_the_columns_values_is_refused() {
    let v2 = read_batch(raw_object());
    let bogus: arrow_array::ArrayRef = std::sync::Arc::new(
        arrow_array::DictionaryArray::<Int32Type>::try_new(
            arrow_array::Int32Array::from(vec![0, 0, 0]),
            std::sync::Arc::new(arrow_array::StringArray::from(vec!["monotonic"])),
        )
        .unwrap(),
    );
    let mut columns = v2.columns().to_vec();
    *columns.last_mut().unwrap() = bogus;
    let bad = RecordBatch::try_new(raw::raw_schema(), columns).unwrap();
    let e = decode_raw(write_object(&bad, raw::SCHEMA_VERSION), unit()).expect_err("refused");
    assert!(
        e.to_string().contains("metric_type") && e.to_string().contains("monotonic"),
        "{e}"
    );
}
