//! Ordering rows: the key and the full order of the raw schema, and the
//! in-memory sort with deduplication.

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{ArrowError, SortOptions};
use arrow_select::interleave::interleave_record_batch;
use horizon_shared::raw::{self, raw_schema};

use super::{BATCH_ROWS, Counts, MergeError};

/// Turns batches into comparable rows: the key, and the full order.
#[derive(Debug)]
pub struct Orderer {
    key: RowConverter,
    order: RowConverter,
    key_idx: [usize; 4],
    tie_idx: [usize; 3],
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
        order_fields.extend(tie_idx.iter().map(|&i| field(i, true)));
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

/// Sorts and deduplicates batches held in memory, handing the result to
/// `emit` in batches of [`BATCH_ROWS`].
pub fn sort_dedup(
    orderer: &Orderer,
    batches: &[RecordBatch],
    mut emit: impl FnMut(RecordBatch) -> Result<(), MergeError>,
) -> Result<Counts, MergeError> {
    let rows = batches
        .iter()
        .map(|b| orderer.rows(b))
        .collect::<Result<Vec<_>, _>>()?;
    let mut idx: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
        .collect();
    let rows_in = idx.len() as u64;
    idx.sort_unstable_by(|a, b| rows[a.0].1.row(a.1).cmp(&rows[b.0].1.row(b.1)));
    let mut keep: Vec<(usize, usize)> = Vec::with_capacity(idx.len());
    for &(b, r) in &idx {
        let dup = keep
            .last()
            .is_some_and(|&(pb, pr)| rows[pb].0.row(pr) == rows[b].0.row(r));
        if !dup {
            keep.push((b, r));
        }
    }
    drop(idx);
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    for chunk in keep.chunks(BATCH_ROWS) {
        emit(interleave_record_batch(&refs, chunk)?)?;
    }
    Ok(Counts {
        rows_in,
        rows_out: keep.len() as u64,
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
