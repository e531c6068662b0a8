//! Sorting, deduplication and k-way merging of raw-schema record batches.
//!
//! Order: `metric, node, series_id, time` ascending (the key), then the
//! tie-breaks `received_at` descending, `relay` descending, `value`
//! descending. Deduplication keeps the first row of each key in that order:
//! of several copies of a point, the one a relay received last wins; equal
//! receipt times fall to the greater relay name, then the greater value, so
//! every run picks the same row (docs/data.md, "Deduplication").
//!
//! Everything here is synchronous and CPU-bound: callers run it on blocking
//! threads. Rows are compared in arrow's row format (one memcmp per compare).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{ArrowError, SortOptions};
use arrow_select::interleave::interleave_record_batch;
use horizon_shared::schema::{SCHEMA_VERSION, raw_schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

/// Rows per output batch of the sort and the merge.
pub const BATCH_ROWS: usize = 8192;

/// Merge errors.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Arrow failed (a bug or a schema mismatch).
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// Parquet failed reading or writing a local file.
    #[error("parquet ({path}): {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: parquet::errors::ParquetError,
    },
    /// A local file could not be created or opened.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

fn pq(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> MergeError + '_ {
    move |source| MergeError::Parquet {
        path: path.to_owned(),
        source,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MergeError + '_ {
    move |source| MergeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Counts of one sort or merge.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Rows read.
    pub rows_in: u64,
    /// Rows written (one per key).
    pub rows_out: u64,
}

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
        let idx = |name: &str| schema.index_of(name);
        let key_idx = [
            idx("metric")?,
            idx("node")?,
            idx("series_id")?,
            idx("time")?,
        ];
        let tie_idx = [idx("received_at")?, idx("relay")?, idx("value")?];
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
    fn rows(&self, batch: &RecordBatch) -> Result<(Rows, Rows), ArrowError> {
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

/// A sorted, deduplicated source for [`merge`].
pub type Source = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// Opens a local Parquet file as a merge source, reading `BATCH_ROWS` at a time.
pub fn open_source(path: &Path) -> Result<Source, MergeError> {
    let file = File::open(path).map_err(io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq(path))?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(pq(path))?;
    Ok(Box::new(reader))
}

struct Cursor {
    source: Source,
    batch: RecordBatch,
    key: Rows,
    order: Rows,
    pos: usize,
}

/// The source's next non-empty batch with its rows (counted as read).
fn next_batch(
    source: &mut Source,
    orderer: &Orderer,
    counts: &mut Counts,
) -> Result<Option<(RecordBatch, Rows, Rows)>, MergeError> {
    while let Some(batch) = source.next().transpose()? {
        if batch.num_rows() > 0 {
            counts.rows_in += batch.num_rows() as u64;
            let (key, order) = orderer.rows(&batch)?;
            return Ok(Some((batch, key, order)));
        }
    }
    Ok(None)
}

/// Merges sources, each sorted and deduplicated in the module's order, into
/// one sorted, deduplicated stream handed to `emit`. Holds one batch per
/// source. Rows of equal key in different sources are resolved by the same
/// rule as [`sort_dedup`].
pub fn merge(
    orderer: &Orderer,
    sources: Vec<Source>,
    mut emit: impl FnMut(RecordBatch) -> Result<(), MergeError>,
) -> Result<Counts, MergeError> {
    let mut cursors: Vec<Cursor> = Vec::with_capacity(sources.len());
    let mut counts = Counts::default();
    for mut source in sources {
        // A source with no rows left is not a cursor.
        if let Some((batch, key, order)) = next_batch(&mut source, orderer, &mut counts)? {
            cursors.push(Cursor {
                source,
                batch,
                key,
                order,
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
                pending.push((top, c.pos));
                counts.rows_out += 1;
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
                Some((batch, key, order)) => {
                    c.batch = batch;
                    c.key = key;
                    c.order = order;
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

fn sift_down(heap: &mut [usize], mut i: usize, less: impl Fn(usize, usize) -> bool) {
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

/// Writer properties of the compacted files: snappy, page-level statistics
/// (min/max per row group and page, so engines prune by metric and node),
/// the sort order declared, the schema version in the key-value metadata.
pub fn output_properties(row_group_rows: usize) -> WriterProperties {
    let schema = raw_schema();
    let sorting = ["metric", "node", "series_id", "time"]
        .iter()
        .filter_map(|n| schema.index_of(n).ok())
        .map(|i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: false,
        })
        .collect();
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_sorting_columns(Some(sorting))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("horizon.schema".into(), SCHEMA_VERSION.to_owned()),
            KeyValue::new("horizon.compacted".into(), "true".to_owned()),
        ]))
        .build()
}

/// Properties of the local spill files (sorted runs): quick to write and read.
pub fn spill_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_max_row_group_row_count(Some(64 * 1024))
        .build()
}

/// A finished local output file.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// Where it is.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
}

/// Local Parquet files of a target size, written in sequence.
#[derive(Debug)]
pub struct OutputFiles {
    dir: PathBuf,
    stem: String,
    props: WriterProperties,
    target_bytes: u64,
    current: Option<(PathBuf, ArrowWriter<File>, u64)>,
    done: Vec<LocalFile>,
}

impl OutputFiles {
    /// Files `<dir>/<stem>-NNNN.parquet`, each closed once it holds about
    /// `target_bytes` (checked after each batch).
    pub fn new(dir: &Path, stem: &str, props: WriterProperties, target_bytes: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            stem: stem.to_owned(),
            props,
            target_bytes,
            current: None,
            done: Vec::new(),
        }
    }

    /// Appends a batch (in slices of 1,024 rows, so files end close to the target).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), MergeError> {
        const SLICE: usize = 1024;
        let mut off = 0;
        while off < batch.num_rows() {
            let len = SLICE.min(batch.num_rows() - off);
            self.write_slice(&batch.slice(off, len))?;
            off += len;
        }
        Ok(())
    }

    fn write_slice(&mut self, batch: &RecordBatch) -> Result<(), MergeError> {
        if self.current.is_none() {
            let path = (self.dir).join(format!("{}-{:04}.parquet", self.stem, self.done.len()));
            let file = File::create(&path).map_err(io(&path))?;
            let w =
                ArrowWriter::try_new(file, Arc::clone(&batch.schema()), Some(self.props.clone()))
                    .map_err(pq(&path))?;
            self.current = Some((path, w, 0));
        }
        if let Some((path, w, rows)) = self.current.as_mut() {
            w.write(batch).map_err(pq(path))?;
            *rows += batch.num_rows() as u64;
            let size = (w.bytes_written() + w.in_progress_size()) as u64;
            if size >= self.target_bytes {
                self.close_current()?;
            }
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), MergeError> {
        if let Some((path, w, rows)) = self.current.take() {
            w.close().map_err(pq(&path))?;
            let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
            self.done.push(LocalFile { path, rows, bytes });
        }
        Ok(())
    }

    /// Closes the last file and returns them all.
    pub fn finish(mut self) -> Result<Vec<LocalFile>, MergeError> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }
}

/// Checks that a batch read from a raw object has the raw schema (names and
/// types; metadata aside).
pub fn check_raw_schema(batch_schema: &arrow_schema::Schema) -> Result<(), String> {
    let want = raw_schema();
    if batch_schema.fields().len() != want.fields().len() {
        return Err(format!(
            "{} columns, the raw schema has {}",
            batch_schema.fields().len(),
            want.fields().len()
        ));
    }
    for (got, want) in batch_schema.fields().iter().zip(want.fields()) {
        if got.name() != want.name() || got.data_type() != want.data_type() {
            return Err(format!(
                "column {:?} of type {} where the raw schema has {:?} of type {}",
                got.name(),
                got.data_type(),
                want.name(),
                want.data_type()
            ));
        }
    }
    Ok(())
}

/// Keeps the rows whose node falls in `shard` of `shards` (by the XXH3 hash
/// of the node name).
pub fn filter_shard(
    batch: &RecordBatch,
    shard: u32,
    shards: u32,
) -> Result<RecordBatch, ArrowError> {
    if shards <= 1 {
        return Ok(batch.clone());
    }
    let node = batch.column(raw_schema().index_of("node")?);
    let node =
        arrow_array::cast::AsArray::as_dictionary::<arrow_array::types::Int32Type>(node.as_ref());
    let values = arrow_array::cast::AsArray::as_string::<i32>(node.values().as_ref());
    let in_shard: Vec<bool> = (0..values.len())
        .map(|i| shard_of(values.value(i), shards) == shard)
        .collect();
    let mask: arrow_array::BooleanArray = node
        .keys()
        .iter()
        .map(|k| Some(k.is_some_and(|k| in_shard[k as usize])))
        .collect();
    arrow_select::filter::filter_record_batch(batch, &mask)
}

/// The shard of a node: XXH3-64 of its name modulo the shard count.
pub fn shard_of(node: &str, shards: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(node.as_bytes()) % u64::from(shards.max(1))) as u32
}

/// Bytes a batch holds in memory.
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.get_array_memory_size())
        .sum()
}

#[cfg(test)]
mod tests;
