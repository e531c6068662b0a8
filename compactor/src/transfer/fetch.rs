//! Moving bytes between the store and the work directory: whole objects
//! streamed to and from local files ([`download`], [`upload`]), and a raw
//! object fetched for a unit ([`fetch_raw`]): whole, or for a shard only
//! its footer, offset index and the pages that hold the shard's rows, by
//! ranged reads.

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use tokio::io::AsyncWriteExt;

use super::decode::{caught, check_chunk_ranges, decode_raw, decode_shard, shard_buckets};
use crate::ctx::blocking;
use crate::error::{DecodeError, UnitError};
use crate::sparse::{self, Sparse};
use crate::store::{get_bytes, store_err};
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

/// Bytes fetched from the end of a raw object for its footer at first: a
/// 32nd of the object, from 5 to 32 KiB (a raw object's footer and offset
/// index take about 2.5 KiB plus 0.1 KiB per node group, 4.2 KiB with 16;
/// a longer one takes a second read).
fn footer_guess(size: u64) -> u64 {
    (size / 32).clamp(5 * 1024, 32 * 1024)
}

/// One raw object, read for a unit.
pub(super) struct Fetched {
    /// The unit's rows, or why the object is unreadable.
    pub(super) rows: Result<Vec<RecordBatch>, DecodeError>,
    /// Bytes fetched.
    pub(super) bytes_read: u64,
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
pub(super) async fn fetch_raw(
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
