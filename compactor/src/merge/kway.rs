//! The k-way merge of sorted, deduplicated sources into one sorted,
//! deduplicated stream.

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Float64Array, RecordBatch};
use arrow_row::Rows;
use arrow_schema::ArrowError;
use arrow_select::interleave::interleave_record_batch;
use horizon_shared::raw;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::order::Orderer;
use super::shared::{BATCH_ROWS, Counts, MergeError, io, pq};

/// A sorted, deduplicated source for [`merge`].
pub type Source = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// Opens a local Parquet file as a merge source, reading `BATCH_ROWS` at a
/// time: a spilled run, or a committed file, which a compactor before
/// schema version 2 wrote without `metric_type` (read as `unknown`).
pub fn open_source(path: &Path) -> Result<Source, MergeError> {
    let file = File::open(path).map_err(io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq(path))?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(pq(path))?;
    Ok(Box::new(reader.map(|b| b.and_then(raw::upgrade_batch))))
}

struct Cursor {
    source: Source,
    batch: RecordBatch,
    key: Rows,
    order: Rows,
    /// The batch's values (for counting value conflicts).
    values: Float64Array,
    pos: usize,
}

/// A batch of a source with what the merge compares it by.
type Loaded = (RecordBatch, Rows, Rows, Float64Array);

/// The source's next non-empty batch with its rows (counted as read).
fn next_batch(
    source: &mut Source,
    orderer: &Orderer,
    counts: &mut Counts,
) -> Result<Option<Loaded>, MergeError> {
    while let Some(batch) = source.next().transpose()? {
        if batch.num_rows() > 0 {
            counts.rows_in += batch.num_rows() as u64;
            let (key, order) = orderer.rows(&batch)?;
            let values = batch
                .column(orderer.tie_idx[2])
                .as_primitive::<Float64Type>()
                .clone();
            return Ok(Some((batch, key, order, values)));
        }
    }
    Ok(None)
}

/// Merges sources, each sorted and deduplicated in the module's order, into
/// one sorted, deduplicated stream handed to `emit`. Holds one batch per
/// source. Rows of equal key in different sources are resolved by the same
/// rule as [`sort_dedup`](super::sort_dedup).
pub fn merge(
    orderer: &Orderer,
    sources: Vec<Source>,
    mut emit: impl FnMut(RecordBatch) -> Result<(), MergeError>,
) -> Result<Counts, MergeError> {
    let mut cursors: Vec<Cursor> = Vec::with_capacity(sources.len());
    let mut counts = Counts::default();
    for mut source in sources {
        // A source with no rows left is not a cursor.
        if let Some((batch, key, order, values)) = next_batch(&mut source, orderer, &mut counts)? {
            cursors.push(Cursor {
                source,
                batch,
                key,
                order,
                values,
                pos: 0,
            });
        }
    }
    if cursors.is_empty() {
        return Ok(counts);
    }
    let less =
        |c: &[Cursor], a: usize, b: usize| c[a].order.row(c[a].pos) < c[b].order.row(c[b].pos);
    // A binary min-heap of cursor indices, ordered by each cursor's current row.
    let mut heap: Vec<usize> = (0..cursors.len()).collect();
    for i in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, i, |a, b| less(&cursors, a, b));
    }
    let mut pending: Vec<(usize, usize)> = Vec::with_capacity(BATCH_ROWS);
    let mut last_key: Vec<u8> = Vec::new();
    let mut have_last = false;
    // The kept copy's value, bit for bit, against which later copies of
    // its key are counted as value conflicts.
    let value_bits = |c: &Cursor| c.values.value(c.pos).to_bits();
    let mut last_value = 0u64;
    let flush = |cursors: &[Cursor],
                 pending: &mut Vec<(usize, usize)>,
                 emit: &mut dyn FnMut(RecordBatch) -> Result<(), MergeError>|
     -> Result<(), MergeError> {
        if pending.is_empty() {
            return Ok(());
        }
        let refs: Vec<&RecordBatch> = cursors.iter().map(|c| &c.batch).collect();
        emit(interleave_record_batch(&refs, pending)?)?;
        pending.clear();
        Ok(())
    };
    while !heap.is_empty() {
        let top = heap[0];
        {
            let c = &cursors[top];
            let key = c.key.row(c.pos);
            if !(have_last && key.as_ref() == last_key.as_slice()) {
                last_key.clear();
                last_key.extend_from_slice(key.as_ref());
                have_last = true;
                last_value = value_bits(c);
                pending.push((top, c.pos));
                counts.rows_out += 1;
            } else if value_bits(c) != last_value {
                counts.value_conflicts += 1;
            }
        }
        if pending.len() >= BATCH_ROWS {
            flush(&cursors, &mut pending, &mut emit)?;
        }
        cursors[top].pos += 1;
        if cursors[top].pos >= cursors[top].batch.num_rows() {
            // The pending rows may point into this batch: write them first.
            flush(&cursors, &mut pending, &mut emit)?;
            let c = &mut cursors[top];
            match next_batch(&mut c.source, orderer, &mut counts)? {
                Some((batch, key, order, values)) => {
                    c.batch = batch;
                    c.key = key;
                    c.order = order;
                    c.values = values;
                    c.pos = 0;
                }
                None => {
                    let last = heap.len() - 1;
                    heap.swap(0, last);
                    heap.pop();
                }
            }
        }
        if !heap.is_empty() {
            sift_down(&mut heap, 0, |a, b| less(&cursors, a, b));
        }
    }
    flush(&cursors, &mut pending, &mut emit)?;
    Ok(counts)
}

/// Restores the min-heap order of `heap` (indices, compared by `less`) below `i`.
pub(crate) fn sift_down(heap: &mut [usize], mut i: usize, less: impl Fn(usize, usize) -> bool) {
    loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut m = i;
        if l < heap.len() && less(heap[l], heap[m]) {
            m = l;
        }
        if r < heap.len() && less(heap[r], heap[m]) {
            m = r;
        }
        if m == i {
            return;
        }
        heap.swap(i, m);
        i = m;
    }
}
