//! Probing a committed file for late keys without downloading it: read its
//! footer, keep the row groups whose min/max statistics could hold one of
//! the late keys, and fetch only those row groups' key and tie-break columns
//! (every column but `labels`) with ranged reads. Used by the late fold
//! (`fold.rs`) to find which late rows duplicate a committed point and
//! which copy the rule keeps. The probe reads neither `labels` nor
//! `metric_type`, so a committed file of schema version 1 (no
//! `metric_type`) is probed as one of version 2.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::ArrowError;
use bytes::Buf;
use horizon_shared::raw::{self, raw_schema};
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

/// Columns a probe reads: the key and the tie-breaks (not `labels`).
const PROBE_COLUMNS: [&str; 7] = [
    "metric",
    "node",
    "series_id",
    "time",
    "received_at",
    "relay",
    "value",
];

/// Bytes fetched for the footer at first (most footers fit).
const FOOTER_GUESS: u64 = 64 * 1024;

/// The late rows' keys, for probing committed files: sorted, so a file's
/// rows (sorted too) are matched by a merge join, with no index to build.
pub(crate) struct LateKeys {
    key: RowConverter,
    tie: RowConverter,
    /// Key of each late row, in key order.
    keys: Rows,
    ties: Rows,
    /// Per late row: metric and node (indices into `names`), series_id, time.
    metric: Vec<u32>,
    node: Vec<u32>,
    names: Vec<String>,
    series: Vec<i64>,
    time: Vec<i64>,
    /// Per late row: its value's bits.
    value: Vec<u64>,
}

/// Where a merge join of one file's rows with the late keys stands.
#[derive(Debug, Default)]
struct Cursor {
    /// Late rows before this are less than the last committed key seen.
    pos: usize,
    /// The last committed key seen (of the previous batch).
    last: Option<Vec<u8>>,
}

/// A late row that duplicates a committed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    /// The late row.
    pub late: usize,
    /// The late copy wins by the rule (otherwise the committed one stays).
    pub wins: bool,
    /// The two copies' values differ (bit for bit).
    pub conflict: bool,
}

fn converter(names: &[&str]) -> Result<RowConverter, ArrowError> {
    let schema = raw_schema();
    let fields = names
        .iter()
        .map(|n| {
            Ok(SortField::new(
                schema.field_with_name(n)?.data_type().clone(),
            ))
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    RowConverter::new(fields)
}

fn columns(batch: &RecordBatch, names: &[&str]) -> Result<Vec<ArrayRef>, ArrowError> {
    names
        .iter()
        .map(|n| Ok(Arc::clone(batch.column(batch.schema().index_of(n)?))))
        .collect()
}

/// A dictionary column's values per row, as indices into `names` (each
/// distinct string stored once).
fn interned(
    batch: &RecordBatch,
    name: &str,
    names: &mut Vec<String>,
    seen: &mut HashMap<String, u32>,
) -> Result<Vec<u32>, ArrowError> {
    let col = batch.column(batch.schema().index_of(name)?);
    let dict = col.as_dictionary::<Int32Type>();
    let values = dict.values().as_string::<i32>();
    let ids: Vec<u32> = (0..values.len())
        .map(|i| {
            let v = values.value(i);
            *seen.entry(v.to_owned()).or_insert_with(|| {
                names.push(v.to_owned());
                (names.len() - 1) as u32
            })
        })
        .collect();
    Ok(dict
        .keys()
        .iter()
        .map(|k| ids[k.unwrap_or_default() as usize])
        .collect())
}

impl LateKeys {
    /// Indexes `late`: sorted by the raw order, one row per key.
    pub(crate) fn new(late: &RecordBatch) -> Result<Self, ArrowError> {
        let key = converter(&raw::SORT_KEY)?;
        let tie = converter(&raw::TIE_BREAKS)?;
        let keys = key.convert_columns(&columns(late, &raw::SORT_KEY)?)?;
        let ties = tie.convert_columns(&columns(late, &raw::TIE_BREAKS)?)?;
        let (mut names, mut seen) = (Vec::new(), HashMap::new());
        let metric = interned(late, "metric", &mut names, &mut seen)?;
        let node = interned(late, "node", &mut names, &mut seen)?;
        let prim = |name: &str| -> Result<Vec<i64>, ArrowError> {
            let c = late.column(late.schema().index_of(name)?);
            Ok(match c.data_type() {
                arrow_schema::DataType::Int64 => c.as_primitive::<Int64Type>().values().to_vec(),
                _ => c
                    .as_primitive::<TimestampNanosecondType>()
                    .values()
                    .to_vec(),
            })
        };
        Ok(Self {
            keys,
            ties,
            metric,
            node,
            names,
            series: prim("series_id")?,
            time: prim("time")?,
            value: late
                .column(late.schema().index_of("value")?)
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|v| v.to_bits())
                .collect(),
            key,
            tie,
        })
    }

    /// Whether a row group's statistics admit one of the late keys (each
    /// column of a row is within its column's min/max; no statistics: yes).
    fn may_hold(&self, rg: &RowGroupMetaData) -> bool {
        let stat = |name: &str| {
            rg.columns()
                .iter()
                .find(|c| c.column_path().parts().first().map(String::as_str) == Some(name))
                .and_then(|c| c.statistics())
        };
        let bytes = |name: &str| -> Option<(Vec<u8>, Vec<u8>)> {
            match stat(name)? {
                Statistics::ByteArray(s) => {
                    Some((s.min_opt()?.data().to_vec(), s.max_opt()?.data().to_vec()))
                }
                _ => None,
            }
        };
        let int = |name: &str| -> Option<(i64, i64)> {
            match stat(name)? {
                Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
                _ => None,
            }
        };
        let (Some(m), Some(n), Some(s), Some(t)) = (
            bytes("metric"),
            bytes("node"),
            int("series_id"),
            int("time"),
        ) else {
            return true;
        };
        // Late rows are sorted by metric first: the candidates are one slice.
        let name = |id: u32| self.names[id as usize].as_bytes();
        let lo = self.metric.partition_point(|&x| name(x) < m.0.as_slice());
        let hi = self.metric.partition_point(|&x| name(x) <= m.1.as_slice());
        (lo..hi).any(|i| {
            let node = name(self.node[i]);
            node >= n.0.as_slice()
                && node <= n.1.as_slice()
                && (s.0..=s.1).contains(&self.series[i])
                && (t.0..=t.1).contains(&self.time[i])
        })
    }

    /// The late rows a batch of committed rows duplicates: a merge join of
    /// the batch's keys with the late keys, from `cursor` on.
    fn hits(
        &self,
        batch: &RecordBatch,
        cursor: &mut Cursor,
        out: &mut Vec<Hit>,
    ) -> Result<(), ArrowError> {
        let keys = self.key.convert_columns(&columns(batch, &raw::SORT_KEY)?)?;
        let n = self.keys.num_rows();
        let mut ties: Option<Rows> = None;
        let values = batch
            .column(batch.schema().index_of("value")?)
            .as_primitive::<Float64Type>()
            .values();
        for i in 0..keys.num_rows() {
            let k = keys.row(i);
            let back = match i {
                0 => cursor.last.as_deref().is_some_and(|l| k.as_ref() < l),
                _ => k < keys.row(i - 1),
            };
            if back {
                // Not sorted (compacted files are; a safeguard): search again.
                let (mut lo, mut hi) = (0, n);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if self.keys.row(mid) < k {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                cursor.pos = lo;
            }
            while cursor.pos < n && self.keys.row(cursor.pos) < k {
                cursor.pos += 1;
            }
            if cursor.pos < n && self.keys.row(cursor.pos) == k {
                let late = cursor.pos;
                if ties.is_none() {
                    ties = Some(
                        self.tie
                            .convert_columns(&columns(batch, &raw::TIE_BREAKS)?)?,
                    );
                }
                // The tie-breaks ascending, as the merge orders them
                // (merge/order.rs): the first received copy wins.
                let committed = ties.as_ref().map(|t| t.row(i));
                let wins = committed.is_none_or(|c| self.ties.row(late) < c);
                let conflict = self.value[late] != values[i].to_bits();
                out.push(Hit {
                    late,
                    wins,
                    conflict,
                });
            }
        }
        if keys.num_rows() > 0 {
            cursor.last = Some(keys.row(keys.num_rows() - 1).as_ref().to_vec());
        }
        Ok(())
    }
}

/// What probing one file found.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    /// Late rows the file already holds a copy of.
    pub hits: Vec<Hit>,
    /// Bytes fetched.
    pub bytes_read: u64,
    /// Row groups read, of all.
    pub row_groups_read: usize,
}

/// Probes the committed file `key` (of `size` bytes) for the late keys.
pub(crate) async fn probe(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    size: u64,
    late: &Arc<LateKeys>,
) -> Result<Probe, UnitError> {
    let get =
        |r: Range<u64>| async move { store.get_range(key, r).await.map_err(store_err("get", key)) };
    let mut out = Probe::default();
    let start = size.saturating_sub(FOOTER_GUESS);
    let mut tail = get(start..size).await?;
    out.bytes_read += tail.len() as u64;
    let corrupt = |message: String| StoreError::Corrupt {
        key: key.to_string(),
        what: "compacted file",
        message,
    };
    if tail.len() < 8 || &tail[tail.len() - 4..] != b"PAR1" {
        return Err(corrupt("no Parquet footer".into()).into());
    }
    let meta_len = u64::from((&tail[tail.len() - 8..]).get_u32_le());
    let footer_start = size
        .checked_sub(meta_len + 8)
        .ok_or_else(|| corrupt("footer longer than the file".into()))?;
    if footer_start < start {
        tail = get(footer_start..size).await?;
        out.bytes_read += tail.len() as u64;
    }
    let tail_start = size - tail.len() as u64;
    let mut sparse = Sparse {
        len: size,
        parts: vec![(tail_start, tail)],
    };
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&sparse)
        .map_err(|e| corrupt(e.to_string()))?;
    let groups: Vec<usize> = (0..metadata.num_row_groups())
        .filter(|&g| late.may_hold(metadata.row_group(g)))
        .collect();
    if groups.is_empty() {
        return Ok(out);
    }
    let ranges = column_ranges(&metadata, &groups);
    let parts = store
        .get_ranges(key, &ranges)
        .await
        .map_err(store_err("get", key))?;
    out.bytes_read += parts.iter().map(|b| b.len() as u64).sum::<u64>();
    out.row_groups_read = groups.len();
    sparse
        .parts
        .extend(ranges.iter().map(|r| r.start).zip(parts));
    let late = Arc::clone(late);
    let path = key.to_string();
    out.hits = blocking(move || read_hits(sparse, metadata, groups, &late))
        .await?
        .map_err(|e| corrupt(format!("{path}: {e}")))?;
    Ok(out)
}

/// Byte ranges of the probe columns of the row groups (adjacent ones joined).
fn column_ranges(metadata: &ParquetMetaData, groups: &[usize]) -> Vec<Range<u64>> {
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for &g in groups {
        for c in metadata.row_group(g).columns() {
            let root = c.column_path().parts().first().map(String::as_str);
            if !root.is_some_and(|r| PROBE_COLUMNS.contains(&r)) {
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

fn read_hits(
    sparse: Sparse,
    metadata: ParquetMetaData,
    groups: Vec<usize>,
    late: &LateKeys,
) -> Result<Vec<Hit>, ParquetError> {
    let meta = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())?;
    let roots: Vec<usize> = meta
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| PROBE_COLUMNS.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(sparse, meta)
        .with_row_groups(groups)
        .with_projection(mask)
        .with_batch_size(crate::merge::BATCH_ROWS)
        .build()?;
    let (mut hits, mut cursor) = (Vec::new(), Cursor::default());
    for batch in reader {
        late.hits(&batch?, &mut cursor, &mut hits)?;
    }
    Ok(hits)
}

#[cfg(test)]
mod tests;
