//! Probing a committed file for late keys without downloading it: read its
//! footer, keep the row groups whose min/max statistics could hold one of
//! the late keys, and fetch only those row groups' key and tie-break columns
//! (every column but `labels`) with ranged reads. Used by the late fold
//! (`fold.rs`) to find which late rows duplicate a committed point and
//! which copy the rule keeps. The probe reads neither `labels` nor
//! `metric_type`, so a committed file of schema version 1 (no
//! `metric_type`) is probed as one of version 2.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::ArrowError;
use horizon_shared::raw::{self, raw_schema};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::file::metadata::RowGroupMetaData;

use crate::ctx::blocking;
use crate::error::UnitError;
use crate::remote::{Remote, bytes_range, int_range};
use crate::store::StoreError;

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
        let bytes = |name: &str| bytes_range(rg, name);
        let int = |name: &str| int_range(rg, name);
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
    let remote = Remote::open(store, key, size).await?;
    let groups: Vec<usize> = (0..remote.metadata.num_row_groups())
        .filter(|&g| late.may_hold(remote.metadata.row_group(g)))
        .collect();
    let row_groups_read = groups.len();
    let (batches, bytes_read) = remote.read(store, groups, &PROBE_COLUMNS).await?;
    let late = Arc::clone(late);
    let path = key.to_string();
    let hits = blocking(move || -> Result<Vec<Hit>, ArrowError> {
        let (mut hits, mut cursor) = (Vec::new(), Cursor::default());
        for batch in &batches {
            late.hits(batch, &mut cursor, &mut hits)?;
        }
        Ok(hits)
    })
    .await?
    .map_err(|e| StoreError::Corrupt {
        key: path.clone(),
        what: "compacted file",
        message: format!("{path}: {e}"),
    })?;
    Ok(Probe {
        hits,
        bytes_read,
        row_groups_read,
    })
}

#[cfg(test)]
mod tests;
