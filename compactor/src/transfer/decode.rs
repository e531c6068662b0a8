//! Decoding a raw object into a unit's record batches, or saying why it
//! cannot be (the object is then moved aside). Objects of either schema
//! version are read: a version-1 object (no `metric_type` column) decodes
//! into version 2 with `metric_type = "unknown"` on every row
//! (`raw::upgrade_batch`), a version-2 object as it is, its types checked
//! to be the column's values. Damaged objects are refused
//! before the Arrow reader sizes anything by what they declare: column
//! chunks outside the file, pages declaring more values than the footer,
//! columns of another type or with nulls, and panics of the parquet crate
//! (each found by the `raw_object` fuzz target).

use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use bytes::Bytes;
use horizon_shared::raw;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelectionPolicy, RowSelector,
};
use parquet::basic::PageType;
use parquet::column::page::PageReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;

use crate::error::DecodeError;
use crate::merge;
use crate::sparse;
use crate::unit::Unit;

/// Decodes one raw object into this shard's batches, or says why it cannot
/// (the object is then moved to quarantine). A shard of a power-of-two
/// count decodes only its pages of an object cut into node groups, as when
/// it fetches them by ranged reads. Public for the fuzz targets.
pub fn decode_raw(bytes: Bytes, unit: Unit) -> Result<Vec<RecordBatch>, DecodeError> {
    let len = bytes.len();
    caught(|| {
        let metadata = ParquetMetaDataReader::new()
            .with_offset_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&bytes)?;
        check_chunk_ranges(&metadata, len)?;
        if let Some(rows) = shard_buckets(unit).and_then(|b| sparse::shard_rows(&metadata, &b)) {
            let pages = sparse::select_pages(&metadata, &rows)?;
            return decode_shard(bytes, metadata, &rows, &pages, unit);
        }
        let groups: Vec<usize> = (0..metadata.num_row_groups()).collect();
        decode_rows(checked_reader(bytes, metadata, &groups, None)?, unit)
    })
}

/// A reader of the object `reader` holds, once its pages' declared value
/// counts are checked ([`check_page_counts`]: the row groups `groups`, and
/// in them the `selected` pages only, if given).
fn checked_reader<R: ChunkReader + 'static>(
    reader: R,
    metadata: ParquetMetaData,
    groups: &[usize],
    selected: Option<&[sparse::ColumnPages]>,
) -> Result<ParquetRecordBatchReaderBuilder<R>, DecodeError> {
    let reader = Arc::new(reader);
    check_page_counts(&reader, &metadata, groups, selected)?;
    let reader = Arc::into_inner(reader).expect("the check keeps no reference");
    let meta = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())?;
    Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
        reader, meta,
    ))
}

/// The node buckets of a shard of a power-of-two count above one.
pub(super) fn shard_buckets(unit: Unit) -> Option<Range<u32>> {
    merge::shard_buckets(unit.shard, unit.shards).filter(|_| unit.shards > 1)
}

/// Decodes `rows` of an object's one row group, reading the dictionary
/// pages and the data `pages` that hold them ([`sparse::select_pages`]):
/// `reader` needs to hold nothing else but the footer.
pub(super) fn decode_shard<R: ChunkReader + 'static>(
    reader: R,
    metadata: ParquetMetaData,
    rows: &Range<usize>,
    pages: &[sparse::ColumnPages],
    unit: Unit,
) -> Result<Vec<RecordBatch>, DecodeError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let total = metadata.row_group(0).num_rows() as usize;
    let selection = RowSelection::from(vec![
        RowSelector::skip(rows.start),
        RowSelector::select(rows.len()),
        RowSelector::skip(total - rows.end),
    ]);
    let reader = checked_reader(reader, metadata, &[0], Some(pages))?
        .with_row_groups(vec![0])
        .with_row_selection(selection)
        // Skip whole pages (a mask would decode every page).
        .with_row_selection_policy(RowSelectionPolicy::Selectors);
    decode_rows(reader, unit)
}

/// Runs a read of one object, turning a panic of the parquet crate into
/// the object's decode error.
pub(super) fn caught<T>(read: impl FnOnce() -> Result<T, DecodeError>) -> Result<T, DecodeError> {
    // The parquet crate asserts (panics) on some damaged pages instead of
    // returning an error (found by the `raw_object` fuzz target). A damaged
    // object must be moved aside, not fail the unit on every run, so a
    // panic while reading it is its decode error. Nothing is shared with
    // the closure but the object's own bytes.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        Err(DecodeError::ReaderPanic(message))
    })
}

fn decode_rows<R: ChunkReader + 'static>(
    reader: ParquetRecordBatchReaderBuilder<R>,
    unit: Unit,
) -> Result<Vec<RecordBatch>, DecodeError> {
    let version = raw::check_schema(reader.schema())?;
    let reader = reader.with_batch_size(64 * 1024).build()?;
    let mut out = Vec::new();
    for b in reader {
        let b = b?;
        // The sort reads these columns' values as they are: of the raw
        // schema's types (the reader can give a column another type than
        // the schema it reports: a `metric` of binary values under a
        // string schema, from a damaged page; found by the `raw_object`
        // fuzz target), and without nulls (the raw schema's are not
        // nullable; a damaged or foreign object could declare them
        // optional).
        for (i, f) in b.schema().fields().iter().enumerate() {
            let got = b.column(i).data_type();
            if got != f.data_type() {
                return Err(DecodeError::Arrow(
                    arrow_schema::ArrowError::InvalidArgumentError(format!(
                        "column {} decoded as {got}, not {}",
                        f.name(),
                        f.data_type()
                    )),
                ));
            }
            if f.name() != "labels" && b.column(i).logical_null_count() > 0 {
                return Err(DecodeError::Arrow(
                    arrow_schema::ArrowError::InvalidArgumentError(format!(
                        "column {} holds nulls",
                        f.name()
                    )),
                ));
            }
        }
        if version == raw::RawVersion::V2 {
            check_metric_types(&b)?;
        }
        let b = raw::upgrade_batch(b)?;
        let b = merge::filter_shard(&b, unit.shard, unit.shards)?;
        if b.num_rows() > 0 {
            out.push(b);
        }
    }
    Ok(out)
}

/// Refuses a batch whose `metric_type` dictionary holds a value that is
/// not one of the column's ([`raw::METRIC_TYPES`]): not a relay's object.
fn check_metric_types(b: &RecordBatch) -> Result<(), DecodeError> {
    let col = b.column(b.schema().index_of(raw::METRIC_TYPE_COLUMN)?);
    let values = col.as_dictionary::<Int32Type>().values().as_string::<i32>();
    match values
        .iter()
        .flatten()
        .find(|v| !raw::METRIC_TYPES.contains(v))
    {
        None => Ok(()),
        Some(v) => Err(DecodeError::Arrow(
            arrow_schema::ArrowError::InvalidArgumentError(format!(
                "column {} holds {v:?}, not one of {:?}",
                raw::METRIC_TYPE_COLUMN,
                raw::METRIC_TYPES
            )),
        )),
    }
}

/// Refuses a footer whose column chunks lie outside the file: the parquet
/// crate asserts on a negative offset or size when it reads the chunk (a
/// panic, which failed the whole unit on every run instead of moving the
/// object aside; found by the `raw_object` fuzz target).
pub(super) fn check_chunk_ranges(meta: &ParquetMetaData, len: usize) -> Result<(), DecodeError> {
    for (g, group) in meta.row_groups().iter().enumerate() {
        for (c, col) in group.columns().iter().enumerate() {
            let start = col
                .dictionary_page_offset()
                .unwrap_or(col.data_page_offset());
            let size = col.compressed_size();
            let end = start.checked_add(size);
            if start < 0 || size < 0 || end.is_none_or(|e| e as u128 > len as u128) {
                return Err(DecodeError::Parquet(ParquetError::General(format!(
                    "row group {g} column {c}: chunk at offset {start}, {size} bytes, outside the {len}-byte file"
                ))));
            }
        }
    }
    Ok(())
}

/// The fewest bytes a dictionary entry of the raw schema takes in a
/// PLAIN-encoded dictionary page: a string's 4-byte length (the numeric
/// columns' entries take 8).
const MIN_ENTRY_BYTES: i64 = 4;

/// Refuses a column chunk whose pages declare more values than they can
/// hold: the Arrow reader sizes its buffers by each page's declared count,
/// so a damaged header in a 4 KB object (found by the `raw_object` fuzz
/// target: a dictionary declaring 1.9 billion values for 40 rows) made it
/// allocate over 14 GB before it failed.
///
/// - Data pages together may declare no more values than the footer's
///   entry for the chunk: a chunk's values are its data pages' values.
/// - A dictionary page declares its entries, which may be more than the
///   chunk's rows (a writer may keep a whole dictionary for a slice of
///   its rows, as pyarrow does), so it is bounded by its own bytes: every
///   entry takes at least [`MIN_ENTRY_BYTES`] of the decompressed page.
///
/// Reading the page headers first costs one more decompression of each
/// page, and bounds the decoder by what the pages really hold.
fn check_page_counts<R: ChunkReader + 'static>(
    reader: &Arc<R>,
    meta: &ParquetMetaData,
    groups: &[usize],
    selected: Option<&[sparse::ColumnPages]>,
) -> Result<(), DecodeError> {
    for &g in groups {
        let group = meta.row_group(g);
        let rows = group.num_rows();
        for (c, column) in group.columns().iter().enumerate() {
            let declared = column.num_values();
            let refuse = |what: &str, n: i64| {
                Err(DecodeError::Parquet(ParquetError::General(format!(
                    "row group {g} column {c}: {what} declare {n} values, the footer {declared} (row group of {rows} rows)"
                ))))
            };
            // With a selection: the dictionary page and the selected data
            // pages only, skipping the others by the offset index.
            let (locations, wanted) = match selected {
                Some(pages) => {
                    let locations = meta
                        .page_index()
                        .and_then(|i| i.page_locations(g, c))
                        .cloned();
                    let pages = pages.get(c).map(|p| p.pages.clone());
                    (locations, pages)
                }
                None => (None, None),
            };
            let mut pages = SerializedPageReader::new(
                Arc::clone(reader),
                column,
                rows.max(0) as usize,
                locations,
            )?;
            let mut values = 0i64;
            let mut data_page = 0usize;
            loop {
                if let Some(wanted) = &wanted {
                    let Some(next) = pages.peek_next_page()? else {
                        break;
                    };
                    if !next.is_dict && !wanted.contains(&data_page) {
                        if data_page >= wanted.end {
                            break;
                        }
                        pages.skip_next_page()?;
                        data_page += 1;
                        continue;
                    }
                }
                let Some(page) = pages.get_next_page()? else {
                    break;
                };
                let n = i64::from(page.num_values());
                match page.page_type() {
                    PageType::DICTIONARY_PAGE
                        if n > page.buffer().len() as i64 / MIN_ENTRY_BYTES =>
                    {
                        return Err(DecodeError::Parquet(ParquetError::General(format!(
                            "row group {g} column {c}: a dictionary page declares {n} entries in {} bytes",
                            page.buffer().len()
                        ))));
                    }
                    PageType::DICTIONARY_PAGE => {}
                    _ => {
                        data_page += 1;
                        values = values.saturating_add(n);
                        if values > declared {
                            return refuse("its data pages", values);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
