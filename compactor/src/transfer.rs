//! Moving bytes between the store and the work directory: downloading the
//! current generation's files, fetching and decoding the new raw objects
//! (moving unreadable ones aside), spilling sorted runs, and uploading the
//! output files.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use horizon_shared::raw;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::PageType;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{FileReader, SerializedFileReader};
use tokio::io::AsyncWriteExt;
use tracing::warn;

use crate::commit::store_err;
use crate::error::{DecodeError, UnitError};
use crate::execute::{Ctx, blocking};
use crate::merge::{self, LocalFile, MergeError, Orderer, OutputFiles};
use crate::settle::delete;
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
    // The parquet crate asserts (panics) on some damaged pages instead of
    // returning an error (found by the `raw_object` fuzz target). A damaged
    // object must be moved aside, not fail the unit on every run, so a
    // panic while reading it is its decode error. Nothing is shared with
    // the closure but the object's own bytes.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_raw_inner(bytes, unit)
    }))
    .unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        Err(DecodeError::ReaderPanic(message))
    })
}

fn decode_raw_inner(bytes: Bytes, unit: Unit) -> Result<Vec<RecordBatch>, DecodeError> {
    let len = bytes.len();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
    check_chunk_ranges(reader.metadata(), len)?;
    raw::check_schema(reader.schema())?;
    check_page_counts(&bytes)?;
    let reader = reader.with_batch_size(64 * 1024).build()?;
    let mut out = Vec::new();
    for b in reader {
        let b = merge::filter_shard(&b?, unit.shard, unit.shards)?;
        if b.num_rows() > 0 {
            out.push(b);
        }
    }
    Ok(out)
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
/// target) made it allocate over 14 GB, or loop for minutes, before it
/// failed. Reading the page headers first costs one decompression of each
/// page and bounds the decoder by the rows the footer admits.
fn check_page_counts(bytes: &Bytes) -> Result<(), DecodeError> {
    let file = SerializedFileReader::new(bytes.clone())?;
    for g in 0..file.num_row_groups() {
        let group = file.get_row_group(g)?;
        let rows = group.metadata().num_rows();
        for c in 0..group.num_columns() {
            let declared = group.metadata().column(c).num_values();
            let refuse = |what: &str, n: i64| {
                Err(DecodeError::Parquet(ParquetError::General(format!(
                    "row group {g} column {c}: {what} declare {n} values, the footer {declared} (row group of {rows} rows)"
                ))))
            };
            let mut values = 0i64;
            for page in group.get_column_page_reader(c)? {
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
}

/// Fetches the new raw objects (bounded concurrency), sorts them in chunks
/// of bounded memory and spills each chunk as a sorted run.
pub(crate) async fn sort_raw(
    ctx: &Ctx<'_>,
    unit: Unit,
    new: &[ObjectMeta],
    dir: &FsPath,
) -> Result<SortedRaw, UnitError> {
    let chunk_limit = ctx.settings.sort_chunk_bytes();
    let store = Arc::clone(ctx.store);
    let mut fetched = futures::stream::iter(new.iter().cloned())
        .map(|meta| {
            let store = Arc::clone(&store);
            async move {
                let bytes = store
                    .get(&meta.location)
                    .await
                    .map_err(store_err("get", &meta.location))?
                    .bytes()
                    .await
                    .map_err(store_err("get", &meta.location))?;
                let decoded = blocking(move || decode_raw(bytes, unit)).await?;
                Ok::<_, UnitError>((meta, decoded))
            }
        })
        .buffered(ctx.settings.read_concurrency as usize);

    let mut out = SortedRaw::default();
    let mut chunk: Vec<RecordBatch> = Vec::new();
    let mut chunk_bytes = 0usize;
    while let Some(item) = fetched.next().await {
        let (meta, decoded) = item?;
        let key = meta.location;
        match decoded {
            Ok(batches) => {
                for b in batches {
                    out.rows += b.num_rows() as u64;
                    chunk_bytes += merge::batch_bytes(&b);
                    chunk.push(b);
                }
                out.folded.push(key.to_string());
                out.folded_bytes += meta.size;
            }
            Err(reason) => {
                quarantine(ctx, &key, &reason).await?;
                out.quarantined.push(key.to_string());
            }
        }
        if chunk_bytes >= chunk_limit {
            let n = out.runs.len();
            out.runs
                .extend(spill(std::mem::take(&mut chunk), dir, n).await?);
            chunk_bytes = 0;
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
