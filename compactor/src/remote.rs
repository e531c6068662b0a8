//! A committed file read by parts: its footer, then only the column chunks
//! of the row groups wanted, by ranged reads. Late folds probe committed
//! files for late keys this way (`late/probe.rs`), and rollups fetch the
//! samples of the series-minutes they recompute (`rollup/fetch.rs`).

use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Buf;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData};
use parquet::file::statistics::Statistics;

use crate::ctx::blocking;
use crate::error::UnitError;
use crate::sparse::Sparse;
use crate::store::{StoreError, store_err};

/// Bytes fetched for the footer at first (most footers fit).
const FOOTER_GUESS: u64 = 64 * 1024;

/// A committed file whose footer was fetched.
pub(crate) struct Remote {
    key: Path,
    sparse: Sparse,
    /// Its metadata.
    pub metadata: ParquetMetaData,
    /// Bytes fetched so far.
    pub bytes_read: u64,
}

fn corrupt(key: &Path, message: String) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        what: "compacted file",
        message,
    }
}

impl Remote {
    /// Fetches the footer of `key` (of `size` bytes).
    pub(crate) async fn open(
        store: &Arc<dyn ObjectStore>,
        key: &Path,
        size: u64,
    ) -> Result<Self, UnitError> {
        let get = |r: Range<u64>| async move {
            store.get_range(key, r).await.map_err(store_err("get", key))
        };
        let start = size.saturating_sub(FOOTER_GUESS);
        let mut tail = get(start..size).await?;
        let mut bytes_read = tail.len() as u64;
        if tail.len() < 8 || &tail[tail.len() - 4..] != b"PAR1" {
            return Err(corrupt(key, "no Parquet footer".into()).into());
        }
        let meta_len = u64::from((&tail[tail.len() - 8..]).get_u32_le());
        let footer_start = size
            .checked_sub(meta_len + 8)
            .ok_or_else(|| corrupt(key, "footer longer than the file".into()))?;
        if footer_start < start {
            tail = get(footer_start..size).await?;
            bytes_read += tail.len() as u64;
        }
        let tail_start = size - tail.len() as u64;
        let sparse = Sparse {
            len: size,
            parts: vec![(tail_start, tail)],
        };
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&sparse)
            .map_err(|e| corrupt(key, e.to_string()))?;
        Ok(Self {
            key: key.clone(),
            sparse,
            metadata,
            bytes_read,
        })
    }

    /// Fetches the `columns` (top-level names) of row groups `groups` and
    /// reads them as record batches.
    pub(crate) async fn read(
        mut self,
        store: &Arc<dyn ObjectStore>,
        groups: Vec<usize>,
        columns: &'static [&'static str],
    ) -> Result<(Vec<RecordBatch>, u64), UnitError> {
        if groups.is_empty() {
            return Ok((Vec::new(), self.bytes_read));
        }
        let ranges = column_ranges(&self.metadata, &groups, columns);
        let key = self.key.clone();
        let parts = store
            .get_ranges(&key, &ranges)
            .await
            .map_err(store_err("get", &key))?;
        self.bytes_read += parts.iter().map(|b| b.len() as u64).sum::<u64>();
        let bytes_read = self.bytes_read;
        self.sparse
            .parts
            .extend(ranges.iter().map(|r| r.start).zip(parts));
        let batches = blocking(move || read_groups(self.sparse, self.metadata, groups, columns))
            .await?
            .map_err(|e| corrupt(&key, format!("{key}: {e}")))?;
        Ok((batches, bytes_read))
    }
}

/// A row group's min and max of a byte-array column.
pub(crate) fn bytes_range(rg: &RowGroupMetaData, name: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    match stat(rg, name)? {
        Statistics::ByteArray(s) => {
            Some((s.min_opt()?.data().to_vec(), s.max_opt()?.data().to_vec()))
        }
        _ => None,
    }
}

/// A row group's min and max of an int64 (or timestamp) column.
pub(crate) fn int_range(rg: &RowGroupMetaData, name: &str) -> Option<(i64, i64)> {
    match stat(rg, name)? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

fn stat<'a>(rg: &'a RowGroupMetaData, name: &str) -> Option<&'a Statistics> {
    rg.columns()
        .iter()
        .find(|c| c.column_path().parts().first().map(String::as_str) == Some(name))
        .and_then(|c| c.statistics())
}

/// Byte ranges of the columns of the row groups (adjacent ones joined).
fn column_ranges(
    metadata: &ParquetMetaData,
    groups: &[usize],
    columns: &[&str],
) -> Vec<Range<u64>> {
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for &g in groups {
        for c in metadata.row_group(g).columns() {
            let root = c.column_path().parts().first().map(String::as_str);
            if !root.is_some_and(|r| columns.contains(&r)) {
                continue;
            }
            let (start, len) = c.byte_range();
            match ranges.last_mut() {
                Some(last) if last.end == start => last.end = start + len,
                _ => ranges.push(start..start + len),
            }
        }
    }
    ranges
}

fn read_groups(
    sparse: Sparse,
    metadata: ParquetMetaData,
    groups: Vec<usize>,
    columns: &[&str],
) -> Result<Vec<RecordBatch>, ParquetError> {
    let meta = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())?;
    let roots: Vec<usize> = meta
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| columns.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(sparse, meta)
        .with_row_groups(groups)
        .with_projection(mask)
        .with_batch_size(crate::merge::BATCH_ROWS)
        .build()?;
    reader.map(|b| b.map_err(ParquetError::from)).collect()
}
