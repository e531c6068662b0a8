//! Moving bytes between the store and the work directory: downloading the
//! current generation's files, fetching and decoding the new raw objects
//! (moving unreadable ones aside), spilling sorted runs, and uploading the
//! output files.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use horizon_shared::raw;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
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
use tokio::io::AsyncWriteExt;
use tracing::warn;

use crate::commit::{get_bytes, store_err};
use crate::error::{DecodeError, UnitError};
use crate::execute::{Ctx, blocking};
use crate::merge::{self, LocalFile, MergeError, Orderer, OutputFiles};
use crate::settle::delete;
use crate::sparse::{self, Sparse};
use crate::unit::Unit;

/// Streams an object into a local file.
pub(crate) async fn download(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    to: &FsPath,
) -> Result<(), UnitError> {
    let local = |source| UnitError::Local {
        path: to.to_owned(),
        source,
    };
    let mut stream = store
        .get(key)
        .await
        .map_err(store_err("get", key))?
        .into_stream();
    let mut file = tokio::fs::File::create(to).await.map_err(local)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(store_err("get", key))?;
        file.write_all(&chunk).await.map_err(local)?;
    }
    file.flush().await.map_err(local)?;
    Ok(())
}

/// Streams a local file into an object (multipart when large).
pub(crate) async fn upload(
    store: &Arc<dyn ObjectStore>,
    from: &FsPath,
    key: &Path,
) -> Result<(), UnitError> {
    let local = |source| UnitError::Local {
        path: from.to_owned(),
        source,
    };
    // BufWriter reports store failures as io::Error.
    let put = |e: std::io::Error| {
        UnitError::Store(store_err("put", key)(object_store::Error::Generic {
            store: "upload",
            source: Box::new(e),
        }))
    };
    let mut file = tokio::fs::File::open(from).await.map_err(local)?;
    let mut w = BufWriter::new(Arc::clone(store), key.clone());
    if let Err(e) = tokio::io::copy(&mut file, &mut w).await {
        let _ = w.abort().await;
        return Err(put(e));
    }
    w.shutdown().await.map_err(put)
}

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
fn shard_buckets(unit: Unit) -> Option<Range<u32>> {
    merge::shard_buckets(unit.shard, unit.shards).filter(|_| unit.shards > 1)
}

/// Decodes `rows` of an object's one row group, reading the dictionary
/// pages and the data `pages` that hold them ([`sparse::select_pages`]):
/// `reader` needs to hold nothing else but the footer.
fn decode_shard<R: ChunkReader + 'static>(
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
fn caught<T>(read: impl FnOnce() -> Result<T, DecodeError>) -> Result<T, DecodeError> {
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
    raw::check_schema(reader.schema())?;
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
        let b = merge::filter_shard(&b, unit.shard, unit.shards)?;
        if b.num_rows() > 0 {
            out.push(b);
        }
    }
    Ok(out)
}

/// Bytes fetched from the end of a raw object for its footer at first: a
/// 32nd of the object, from 5 to 32 KiB (a raw object's footer and offset
/// index take about 2.5 KiB plus 0.1 KiB per node group, 4.2 KiB with 16;
/// a longer one takes a second read).
fn footer_guess(size: u64) -> u64 {
    (size / 32).clamp(5 * 1024, 32 * 1024)
}

/// One raw object, read for a unit.
struct Fetched {
    /// The unit's rows, or why the object is unreadable.
    rows: Result<Vec<RecordBatch>, DecodeError>,
    /// Bytes fetched.
    bytes_read: u64,
}

/// Fetches and decodes a raw object: whole, or for a shard of a
/// power-of-two count, its footer and then, if the object is cut into node
/// groups, its offset index and only the pages that hold the shard's rows
/// (each column's dictionary page and its data pages of the shard's
/// groups); an object without node groups is read whole. Parts less than
/// `gap` bytes apart are fetched in one GET, and an object of at most
/// `gap` bytes whole (`--read-gap`).
///
/// An object whose parts do not decode is then fetched whole and decoded
/// by [`decode_raw`], which decides whether it is moved aside: damage
/// found in the parts is damage of the object, but a mistake in choosing
/// the parts must not move a sound object aside.
async fn fetch_raw(
    store: &Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
    unit: Unit,
    gap: u64,
) -> Result<Fetched, UnitError> {
    let key = &meta.location;
    let mut bytes_read = 0;
    if let Some(buckets) = shard_buckets(unit).filter(|_| meta.size > gap) {
        let parts = fetch_parts(store, meta, unit, gap, buckets).await?;
        if parts.rows.is_ok() {
            return Ok(parts);
        }
        bytes_read = parts.bytes_read;
    }
    let bytes = get_bytes(store, key).await?;
    bytes_read += bytes.len() as u64;
    let rows = blocking(move || decode_raw(bytes, unit)).await?;
    Ok(Fetched { rows, bytes_read })
}

/// [`fetch_raw`] by parts, for a shard's `buckets`.
async fn fetch_parts(
    store: &Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
    unit: Unit,
    gap: u64,
    buckets: Range<u32>,
) -> Result<Fetched, UnitError> {
    let key = &meta.location;
    let size = meta.size;
    let mut parts = Parts {
        store,
        key,
        gap,
        sparse: Sparse {
            len: size,
            parts: Vec::new(),
        },
        from: size,
        bytes_read: 0,
    };
    let failed = |e, bytes_read| {
        Ok(Fetched {
            rows: Err(e),
            bytes_read,
        })
    };
    parts
        .fetch_from(size.saturating_sub(footer_guess(size)))
        .await?;
    // The footer: its length is in the last 8 bytes.
    let footer_start = match footer_start(&parts.sparse.parts[0].1, size) {
        Ok(start) => start,
        Err(e) => return failed(e, parts.bytes_read),
    };
    parts.fetch_from(footer_start).await?;
    let plan = caught(|| {
        let metadata = ParquetMetaDataReader::new().parse_and_finish(&parts.sparse)?;
        check_chunk_ranges(&metadata, size as usize)?;
        let rows = sparse::shard_rows(&metadata, &buckets);
        Ok((metadata, rows))
    });
    let (metadata, rows) = match plan {
        Ok(p) => p,
        Err(e) => return failed(e, parts.bytes_read),
    };
    let Some(rows) = rows else {
        // No node groups: the rest of the object (its parts join into one).
        parts.fetch_from(0).await?;
        let bytes = match parts.sparse.parts.as_slice() {
            [(0, whole)] if whole.len() as u64 == size => whole.clone(),
            _ => {
                let whole = get_bytes(store, key).await?;
                parts.bytes_read += whole.len() as u64;
                whole
            }
        };
        let rows = blocking(move || decode_raw(bytes, unit)).await?;
        return Ok(Fetched {
            rows,
            bytes_read: parts.bytes_read,
        });
    };
    if rows.is_empty() {
        return Ok(Fetched {
            rows: Ok(Vec::new()),
            bytes_read: parts.bytes_read,
        });
    }
    // The offset index, just before the footer.
    let index = sparse::offset_index_range(&metadata).expect("checked by shard_rows");
    if index.start < parts.from && index.end <= size {
        parts.fetch_from(index.start).await?;
    }
    let plan = caught(|| {
        let mut reader = ParquetMetaDataReader::new_with_metadata(metadata)
            .with_offset_index_policy(PageIndexPolicy::Required);
        reader.read_page_indexes(&parts.sparse)?;
        let metadata = reader.finish()?;
        let pages = sparse::select_pages(&metadata, &rows)?;
        Ok((metadata, pages))
    });
    let (metadata, pages) = match plan {
        Ok(p) => p,
        Err(e) => return failed(e, parts.bytes_read),
    };
    // Each column's dictionary page and data pages not yet fetched.
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for c in &pages {
        for r in c.dictionary.iter().chain([&c.bytes]) {
            let r = r.start..r.end.min(parts.from);
            if r.is_empty() {
                continue;
            }
            match ranges.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => ranges.push(r),
            }
        }
    }
    parts.fetch_ranges(&ranges).await?;
    let sparse = parts.sparse;
    let rows =
        blocking(move || caught(|| decode_shard(sparse, metadata, &rows, &pages, unit))).await?;
    Ok(Fetched {
        rows,
        bytes_read: parts.bytes_read,
    })
}

/// The parts of one object fetched so far: a tail from `from` to its end,
/// and ranges before it.
struct Parts<'a> {
    store: &'a Arc<dyn ObjectStore>,
    key: &'a Path,
    /// Ranges closer than this are fetched in one GET.
    gap: u64,
    sparse: Sparse,
    /// Where the fetched tail starts.
    from: u64,
    bytes_read: u64,
}

impl Parts<'_> {
    /// Extends the tail down to `start`.
    async fn fetch_from(&mut self, start: u64) -> Result<(), UnitError> {
        if start < self.from {
            let r = start..self.from;
            self.fetch_ranges(std::slice::from_ref(&r)).await?;
            self.from = start;
        }
        Ok(())
    }

    /// Fetches ranges (not overlapping what was fetched), counting the
    /// bytes the GETs return (gaps included).
    async fn fetch_ranges(&mut self, ranges: &[Range<u64>]) -> Result<(), UnitError> {
        if ranges.is_empty() {
            return Ok(());
        }
        let (store, key) = (self.store, self.key);
        let fetched = AtomicU64::new(0);
        let got = object_store::coalesce_ranges(
            ranges,
            |r| {
                let fetched = &fetched;
                async move {
                    let b = store.get_range(key, r).await?;
                    fetched.fetch_add(b.len() as u64, Ordering::Relaxed);
                    Ok::<_, object_store::Error>(b)
                }
            },
            self.gap,
        )
        .await
        .map_err(store_err("get", key))?;
        self.bytes_read += fetched.into_inner();
        for (r, b) in ranges.iter().zip(got) {
            self.sparse.add(r.start, b);
        }
        Ok(())
    }
}

/// Where the footer of an object of `size` bytes starts, from its last bytes.
fn footer_start(tail: &Bytes, size: u64) -> Result<u64, DecodeError> {
    let bad = |m: &str| Err(DecodeError::Parquet(ParquetError::General(m.to_owned())));
    if tail.len() < 8 || &tail[tail.len() - 4..] != b"PAR1" {
        return bad("no Parquet footer");
    }
    let meta_len = u64::from(u32::from_le_bytes(
        tail[tail.len() - 8..tail.len() - 4]
            .try_into()
            .expect("4 bytes"),
    ));
    match size.checked_sub(meta_len + 8) {
        Some(start) if start >= 4 => Ok(start),
        _ => bad("footer longer than the file"),
    }
}

/// Refuses a footer whose column chunks lie outside the file: the parquet
/// crate asserts on a negative offset or size when it reads the chunk (a
/// panic, which failed the whole unit on every run instead of moving the
/// object aside; found by the `raw_object` fuzz target).
fn check_chunk_ranges(meta: &ParquetMetaData, len: usize) -> Result<(), DecodeError> {
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

/// Refuses a column chunk whose pages declare more values than its footer
/// entry: the Arrow reader sizes its buffers by each page's declared count,
/// so a damaged header in a 4 KB object (found by the `raw_object` fuzz
/// target) made it allocate over 14 GB before it failed. Reading the page
/// headers first costs one more decompression of each page, and bounds
/// the decoder by the values the footer admits.
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
                    PageType::DICTIONARY_PAGE if n > declared => {
                        return refuse("a dictionary page", n);
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

/// The new raw objects, sorted into runs.
#[derive(Debug, Default)]
pub(crate) struct SortedRaw {
    /// Sorted, deduplicated run files.
    pub runs: Vec<PathBuf>,
    /// Rows read (this shard's).
    pub rows: u64,
    /// Keys of unreadable objects, moved to the quarantine prefix.
    pub quarantined: Vec<String>,
    /// Keys of the objects whose rows are in the runs.
    pub folded: Vec<String>,
    /// Their size.
    pub folded_bytes: u64,
    /// Bytes fetched from the raw objects (footers, offset indexes and
    /// this shard's pages, with the gaps `--read-gap` joins; or whole
    /// objects).
    pub bytes_read: u64,
}

/// Fetches the new raw objects, sorts them in chunks of bounded memory and
/// spills each chunk as a sorted run. Memory: a chunk's decoded rows plus
/// the sort's index of them stay within `Settings::sort_chunk_bytes`, and
/// decoded objects fetched ahead within `Settings::read_ahead_bytes` (the
/// objects fetched at once are as many as fit by the largest decoded so
/// far, from one up to `--read-concurrency`).
pub(crate) async fn sort_raw(
    ctx: &Ctx<'_>,
    unit: Unit,
    new: &[ObjectMeta],
    dir: &FsPath,
) -> Result<SortedRaw, UnitError> {
    let chunk_limit = ctx.settings.sort_chunk_bytes();
    let ahead_limit = ctx.settings.read_ahead_bytes();
    let store = Arc::clone(ctx.store);
    let gap = ctx.settings.read_gap;
    let fetch = |meta: ObjectMeta| {
        let store = Arc::clone(&store);
        async move {
            let f = fetch_raw(&store, &meta, unit, gap).await?;
            Ok::<_, UnitError>((meta, f))
        }
    };
    let mut queue = new.iter().cloned();
    let mut fetched = FuturesOrdered::new();
    // Decoded bytes of the largest object so far (0: none yet, fetch one).
    let mut largest = 0usize;

    let mut out = SortedRaw::default();
    let mut chunk: Vec<RecordBatch> = Vec::new();
    let mut chunk_bytes = 0usize;
    loop {
        let at_once = match largest {
            0 => 1,
            l => (ahead_limit / l).clamp(1, ctx.settings.read_concurrency as usize),
        };
        while fetched.len() < at_once {
            match queue.next() {
                Some(meta) => fetched.push_back(fetch(meta)),
                None => break,
            }
        }
        let Some(item) = fetched.next().await else {
            break;
        };
        let (meta, fetched) = item?;
        let key = meta.location;
        out.bytes_read += fetched.bytes_read;
        match fetched.rows {
            Ok(batches) => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                let bytes = batches.iter().map(merge::batch_bytes).sum::<usize>()
                    + rows * merge::SORT_BYTES_PER_ROW;
                largest = largest.max(bytes).max(1);
                if chunk_bytes + bytes > chunk_limit && !chunk.is_empty() {
                    let n = out.runs.len();
                    out.runs
                        .extend(spill(std::mem::take(&mut chunk), dir, n).await?);
                    chunk_bytes = 0;
                }
                out.rows += rows as u64;
                chunk_bytes += bytes;
                chunk.extend(batches);
                out.folded.push(key.to_string());
                out.folded_bytes += meta.size;
            }
            Err(reason) => {
                quarantine(ctx, &key, &reason).await?;
                out.quarantined.push(key.to_string());
            }
        }
    }
    if !chunk.is_empty() {
        let n = out.runs.len();
        out.runs.extend(spill(chunk, dir, n).await?);
    }
    Ok(out)
}

/// Moves an unreadable raw object to the quarantine prefix (copy, then delete).
async fn quarantine(ctx: &Ctx<'_>, key: &Path, reason: &DecodeError) -> Result<(), UnitError> {
    let to = ctx.keys.quarantine(key);
    warn!(object = %key, quarantine = %to, %reason, "raw object is unreadable; moving it aside");
    ctx.store
        .copy(key, &to)
        .await
        .map_err(store_err("copy", key))?;
    delete(ctx, key).await?;
    Ok(())
}

/// Sorts and deduplicates a chunk and writes it as a local run file.
async fn spill(chunk: Vec<RecordBatch>, dir: &FsPath, n: usize) -> Result<Vec<PathBuf>, UnitError> {
    let dir = dir.to_owned();
    let files = blocking(move || -> Result<Vec<LocalFile>, MergeError> {
        let orderer = Orderer::new()?;
        let mut out = OutputFiles::new(
            &dir,
            &format!("run-{n:04}"),
            merge::spill_properties(),
            u64::MAX,
        );
        merge::sort_dedup(&orderer, &chunk, |b| out.write(&b))?;
        out.finish()
    })
    .await??;
    Ok(files.into_iter().map(|f| f.path).collect())
}

#[cfg(test)]
mod tests;
