//! Moving bytes between the store and the work directory: downloading the
//! current generation's files, fetching and decoding the new raw objects
//! (moving unreadable ones aside), spilling sorted runs, and uploading the
//! output files.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use horizon_shared::raw;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::PageType;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;
use tokio::io::AsyncWriteExt;
use tracing::warn;

use crate::commit::{get_bytes, store_err};
use crate::error::{DecodeError, UnitError};
use crate::execute::{Ctx, blocking};
use crate::merge::{self, LocalFile, MergeError, Orderer, OutputFiles};
use crate::settle::delete;
use crate::sparse::Sparse;
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
/// (the object is then moved to quarantine). Public for the fuzz targets.
pub fn decode_raw(bytes: Bytes, unit: Unit) -> Result<Vec<RecordBatch>, DecodeError> {
    let len = bytes.len();
    caught(|| {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
        check_chunk_ranges(reader.metadata(), len)?;
        let groups: Vec<usize> = (0..reader.metadata().num_row_groups()).collect();
        check_page_counts(&Arc::new(bytes), reader.metadata(), &groups)?;
        decode_rows(reader, unit)
    })
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
        // The sort reads these columns' values as they are: no nulls (the
        // raw schema's are not nullable; a damaged or foreign object could
        // declare them optional).
        for (i, f) in b.schema().fields().iter().enumerate() {
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
/// 32nd of the object, from 8 to 32 KiB (a raw object's footer is about
/// 1.1 KiB plus 1.3 KiB per row group, and the encoder makes a row group
/// per 4,096 rows or more; a longer footer takes a second read).
fn footer_guess(size: u64) -> u64 {
    (size / 32).clamp(8 * 1024, 32 * 1024)
}

/// One raw object, read for a unit.
struct Fetched {
    /// The unit's rows, or why the object is unreadable.
    rows: Result<Vec<RecordBatch>, DecodeError>,
    /// Bytes fetched.
    bytes_read: u64,
}

/// Fetches and decodes a raw object: whole, or for a shard of a
/// power-of-two count, its footer and then only the row groups that can
/// hold the shard's nodes (the object's `horizon.node_buckets` list; an
/// object without it is read whole).
async fn fetch_raw(
    store: &Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
    unit: Unit,
) -> Result<Fetched, UnitError> {
    let key = &meta.location;
    let get =
        |r: Range<u64>| async move { store.get_range(key, r).await.map_err(store_err("get", key)) };
    let Some(buckets) = merge::shard_buckets(unit.shard, unit.shards).filter(|_| unit.shards > 1)
    else {
        let bytes = get_bytes(store, key).await?;
        let bytes_read = bytes.len() as u64;
        let rows = blocking(move || decode_raw(bytes, unit)).await?;
        return Ok(Fetched { rows, bytes_read });
    };
    let size = meta.size;
    let tail_start = size.saturating_sub(footer_guess(size));
    let tail = get(tail_start..size).await?;
    let mut bytes_read = tail.len() as u64;
    let mut sparse = Sparse {
        len: size,
        parts: vec![(tail_start, tail)],
    };
    // The footer: its length is in the last 8 bytes.
    let footer_start = match footer_start(&sparse.parts[0].1, size) {
        Ok(start) => start,
        Err(e) => {
            return Ok(Fetched {
                rows: Err(e),
                bytes_read,
            });
        }
    };
    if footer_start < tail_start {
        let rest = get(footer_start..tail_start).await?;
        bytes_read += rest.len() as u64;
        sparse.add(footer_start, rest);
    }
    let plan = caught(|| {
        let metadata = ParquetMetaDataReader::new().parse_and_finish(&sparse)?;
        check_chunk_ranges(&metadata, size as usize)?;
        let groups = shard_row_groups(&metadata, &buckets);
        Ok((metadata, groups))
    });
    let (metadata, groups) = match plan {
        Ok(p) => p,
        Err(e) => {
            return Ok(Fetched {
                rows: Err(e),
                bytes_read,
            });
        }
    };
    // The row groups' column chunks not yet fetched (adjacent ones joined).
    let fetched_from = footer_start.min(tail_start);
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for &g in &groups {
        for c in metadata.row_group(g).columns() {
            let (start, len) = c.byte_range();
            let r = start..(start + len).min(fetched_from);
            if r.is_empty() {
                continue;
            }
            match ranges.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => ranges.push(r),
            }
        }
    }
    if !ranges.is_empty() {
        let parts = store
            .get_ranges(key, &ranges)
            .await
            .map_err(store_err("get", key))?;
        for (r, b) in ranges.iter().zip(parts) {
            bytes_read += b.len() as u64;
            sparse.add(r.start, b);
        }
    }
    let rows = blocking(move || {
        caught(|| {
            let sparse = Arc::new(sparse);
            check_page_counts(&sparse, &metadata, &groups)?;
            let sparse = Arc::into_inner(sparse).expect("the check keeps no reference");
            let meta = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())?;
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(sparse, meta)
                .with_row_groups(groups);
            decode_rows(reader, unit)
        })
    })
    .await?;
    Ok(Fetched { rows, bytes_read })
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

/// The row groups of an object that can hold nodes of the bucket range:
/// by its `horizon.node_buckets` list, or all of them without one.
fn shard_row_groups(metadata: &ParquetMetaData, buckets: &Range<u32>) -> Vec<usize> {
    let n = metadata.num_row_groups();
    let listed = metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == raw::NODE_BUCKETS_KEY))
        .and_then(|k| k.value.as_deref())
        .and_then(|v| raw::parse_node_buckets(v, n));
    match listed {
        Some(ranges) => (0..n)
            .filter(|&g| ranges[g].start < buckets.end && buckets.start < ranges[g].end)
            .collect(),
        None => (0..n).collect(),
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
            let pages =
                SerializedPageReader::new(Arc::clone(reader), column, rows.max(0) as usize, None)?;
            let mut values = 0i64;
            for page in pages {
                let page = page?;
                let n = i64::from(page.num_values());
                match page.page_type() {
                    PageType::DICTIONARY_PAGE if n > declared => {
                        return refuse("a dictionary page", n);
                    }
                    PageType::DICTIONARY_PAGE => {}
                    _ => {
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
    /// Bytes fetched from the raw objects (footers and this shard's row
    /// groups, or whole objects).
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
    let fetch = |meta: ObjectMeta| {
        let store = Arc::clone(&store);
        async move {
            let f = fetch_raw(&store, &meta, unit).await?;
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
