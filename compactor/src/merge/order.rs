//! Ordering rows: the key and the full order of the raw schema, and the
//! in-memory sort with deduplication.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{ArrowError, SortOptions};
use arrow_select::interleave::interleave_record_batch;
use horizon_shared::raw::{self, raw_schema};

use super::shared::{BATCH_ROWS, Counts, MergeError};

/// Turns batches into comparable rows: the key, and the full order.
#[derive(Debug)]
pub struct Orderer {
    key: RowConverter,
    order: RowConverter,
    key_idx: [usize; 4],
    pub(super) tie_idx: [usize; 3],
}

impl Orderer {
    /// An orderer for the raw schema.
    pub fn new() -> Result<Self, ArrowError> {
        let schema = raw_schema();
        let key_idx = raw::column_indices(raw::SORT_KEY)?;
        let tie_idx = raw::column_indices(raw::TIE_BREAKS)?;
        let field = |i: usize, descending: bool| {
            SortField::new_with_options(
                schema.field(i).data_type().clone(),
                SortOptions {
                    descending,
                    nulls_first: false,
                },
            )
        };
        let key_fields: Vec<_> = key_idx.iter().map(|&i| field(i, false)).collect();
        let mut order_fields = key_fields.clone();
        order_fields.extend(tie_idx.iter().map(|&i| field(i, false)));
        Ok(Self {
            key: RowConverter::new(key_fields)?,
            order: RowConverter::new(order_fields)?,
            key_idx,
            tie_idx,
        })
    }

    /// (key rows, order rows) of a batch.
    pub(super) fn rows(&self, batch: &RecordBatch) -> Result<(Rows, Rows), ArrowError> {
        let key_cols: Vec<ArrayRef> = self
            .key_idx
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let mut order_cols = key_cols.clone();
        order_cols.extend(self.tie_idx.iter().map(|&i| batch.column(i).clone()));
        Ok((
            self.key.convert_columns(&key_cols)?,
            self.order.convert_columns(&order_cols)?,
        ))
    }
}

/// Bytes of the sort's own index per row, beside the rows' batches: what
/// [`sort_dedup`] allocates (counted by callers bounding a chunk's memory).
pub const SORT_BYTES_PER_ROW: usize = std::mem::size_of::<Entry>();

/// A row's place in the order, in fixed width: its strings as ranks among
/// the distinct strings of the sorted batches (string order), its numbers
/// as they are, its value as an integer of the same total order.
#[derive(Debug, Clone, Copy)]
struct Entry {
    metric: u32,
    node: u32,
    series_id: i64,
    time: i64,
    received_at: i64,
    value: i64,
    relay: u32,
    batch: u32,
    row: u32,
}

impl Entry {
    fn key(&self) -> (u32, u32, i64, i64) {
        (self.metric, self.node, self.series_id, self.time)
    }
}

/// The order of [`Orderer`]'s rows: the key, then the tie-breaks, all
/// ascending (`value` by `f64::total_cmp`, as arrow's row format does): of
/// several copies of a point the first received comes first.
fn order(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    a.key()
        .cmp(&b.key())
        .then_with(|| (a.received_at, a.relay, a.value).cmp(&(b.received_at, b.relay, b.value)))
}

/// `f64::total_cmp` as an integer order.
fn total_order(v: f64) -> i64 {
    let s = v.to_bits() as i64;
    s ^ (((s >> 63) as u64) >> 1) as i64
}

/// Per batch, the rank of each dictionary value of a string column among
/// the distinct values of all batches.
fn ranks(batches: &[RecordBatch], col: usize) -> Result<Vec<Vec<u32>>, ArrowError> {
    let values = |b: &RecordBatch| -> Result<arrow_array::StringArray, ArrowError> {
        let d = b
            .column(col)
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| {
                ArrowError::InvalidArgumentError(format!("column {col} is not a dictionary"))
            })?;
        Ok(d.values().as_string::<i32>().clone())
    };
    let all: Vec<arrow_array::StringArray> =
        batches.iter().map(values).collect::<Result<_, _>>()?;
    let mut distinct: Vec<&str> = all.iter().flat_map(|v| v.iter().flatten()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    Ok(all
        .iter()
        .map(|v| {
            v.iter()
                .map(|s| distinct.binary_search(&s.unwrap_or_default()).unwrap_or(0) as u32)
                .collect()
        })
        .collect())
}

/// Sorts and deduplicates batches held in memory, handing the result to
/// `emit` in batches of [`BATCH_ROWS`]. The batches must hold no nulls in
/// the key and tie-break columns (the raw schema's are not nullable; the
/// reader refuses objects that hold some). Besides the batches it allocates
/// [`SORT_BYTES_PER_ROW`] per row.
pub fn sort_dedup(
    orderer: &Orderer,
    batches: &[RecordBatch],
    mut emit: impl FnMut(RecordBatch) -> Result<(), MergeError>,
) -> Result<Counts, MergeError> {
    let [metric, node, series_id, time] = orderer.key_idx;
    let [received_at, relay, value] = orderer.tie_idx;
    let (metric_rank, node_rank, relay_rank) = (
        ranks(batches, metric)?,
        ranks(batches, node)?,
        ranks(batches, relay)?,
    );
    let rows_in: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut entries: Vec<Entry> = Vec::with_capacity(rows_in);
    for (b, batch) in batches.iter().enumerate() {
        let keys = |c: usize| batch.column(c).as_dictionary::<Int32Type>().keys().values();
        let ts = |c: usize| {
            batch
                .column(c)
                .as_primitive::<TimestampNanosecondType>()
                .values()
        };
        let (m, n, r) = (keys(metric), keys(node), keys(relay));
        let s = batch.column(series_id).as_primitive::<Int64Type>().values();
        let (t, rec) = (ts(time), ts(received_at));
        let v = batch.column(value).as_primitive::<Float64Type>().values();
        for i in 0..batch.num_rows() {
            entries.push(Entry {
                metric: metric_rank[b][m[i] as usize],
                node: node_rank[b][n[i] as usize],
                series_id: s[i],
                time: t[i],
                received_at: rec[i],
                value: total_order(v[i]),
                relay: relay_rank[b][r[i] as usize],
                batch: b as u32,
                row: i as u32,
            });
        }
    }
    entries.sort_unstable_by(order);
    // The first of each key is the one the rule keeps; a copy dropped with
    // another value than the kept one's is a value conflict.
    let mut value_conflicts = 0u64;
    entries.dedup_by(|later, first| {
        let duplicate = later.key() == first.key();
        value_conflicts += u64::from(duplicate && later.value != first.value);
        duplicate
    });
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let mut idx: Vec<(usize, usize)> = Vec::with_capacity(BATCH_ROWS);
    for chunk in entries.chunks(BATCH_ROWS) {
        idx.clear();
        idx.extend(chunk.iter().map(|e| (e.batch as usize, e.row as usize)));
        emit(interleave_record_batch(&refs, &idx)?)?;
    }
    Ok(Counts {
        rows_in: rows_in as u64,
        rows_out: entries.len() as u64,
        value_conflicts,
    })
}

/// Bytes a batch holds in memory.
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.get_array_memory_size())
        .sum()
}
