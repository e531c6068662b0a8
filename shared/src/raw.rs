//! The raw micro-batch format, in one place: the relays write it, the
//! compactor reads it (docs/data.md describes it).
//!
//! - the Arrow schema: [`raw_schema`] (from [`crate::schema`]);
//! - the sort order: [`SORT_KEY`] ascending, then [`TIE_BREAKS`] descending;
//! - the key-value metadata: [`SCHEMA_KEY`] (and [`COMPACTED_KEY`] on the
//!   compactor's output);
//! - the writer properties of a raw object: [`raw_writer_properties`];
//! - the encoder: [`encode_by_hour`] from borrowed rows, [`encode_flush`]
//!   (the same, with the points of old hours in one late object),
//!   [`encode_raw_objects`] from owned points (tools and tests that need raw
//!   objects without a relay);
//! - the reader's check: [`check_schema`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

mod coded;
mod labels;

pub use labels::{
    LabelSets, LabelSlot, MAX_ENTRIES, MAX_NAMES, MAX_SETS, MAX_TEXT, RowSets, lock_sets,
};

use crate::layout::Hour;
use crate::model::series_hash;
use crate::proto::Label;
use crate::schema::map_builder_with_capacity;
pub use crate::schema::{RawRow, SCHEMA_VERSION, build_raw_batch, raw_schema};
use arrow_schema::{ArrowError, Schema};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Key-value metadata key holding [`SCHEMA_VERSION`].
pub const SCHEMA_KEY: &str = "horizon.schema";

/// Key-value metadata key marking a compacted file (`"true"`).
pub const COMPACTED_KEY: &str = "horizon.compacted";

/// The sort key, ascending: the order raw objects and compacted files are
/// written in, the order readers prune and merge by, and (as a whole) the
/// identity of a point.
pub const SORT_KEY: [&str; 4] = ["metric", "node", "series_id", "time"];

/// Tie-breaks after the key, descending: of several copies of a point, the
/// first in this order is kept (docs/data.md, "Deduplication").
pub const TIE_BREAKS: [&str; 3] = ["received_at", "relay", "value"];

/// Indices in [`raw_schema`] of the named columns.
pub fn column_indices<const N: usize>(names: [&str; N]) -> Result<[usize; N], ArrowError> {
    let schema = raw_schema();
    let mut out = [0; N];
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = schema.index_of(name)?;
    }
    Ok(out)
}

/// The declared sort order ([`SORT_KEY`], ascending) as Parquet sorting columns.
pub fn sorting_columns() -> Vec<SortingColumn> {
    let schema = raw_schema();
    SORT_KEY
        .iter()
        .filter_map(|n| schema.index_of(n).ok())
        .map(|i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: false,
        })
        .collect()
}

/// The key-value metadata: the schema version, and the compacted mark if
/// `compacted`.
pub fn metadata(compacted: bool) -> Vec<KeyValue> {
    let mut kv = vec![KeyValue::new(SCHEMA_KEY.into(), SCHEMA_VERSION.to_owned())];
    if compacted {
        kv.push(KeyValue::new(COMPACTED_KEY.into(), "true".to_owned()));
    }
    kv
}

/// Writer properties of a raw object: zstd or snappy, the schema version in
/// the metadata, the sort order declared, the `value` column in byte stream
/// split encoding (no dictionary: on the synthetic hour's data an object is
/// 40% smaller than with a dictionary of values, which every compactor shard
/// would read whole, and encoding it hashes nothing), and no statistics:
/// only the compactor reads raw objects, and it reads them whole or by node
/// group, never by a column's range (computing them took about a tenth of
/// the encoder's instructions, mostly comparing strings).
pub fn raw_writer_properties(zstd: bool) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(if zstd {
            Compression::ZSTD(ZstdLevel::default())
        } else {
            Compression::SNAPPY
        })
        .set_column_dictionary_enabled("value".into(), false)
        .set_column_encoding("value".into(), Encoding::BYTE_STREAM_SPLIT)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_key_value_metadata(Some(metadata(false)))
        .set_sorting_columns(Some(sorting_columns()))
        .build()
}

/// Why rows could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The rows do not make a batch of the raw schema.
    #[error("building the record batch: {0}")]
    Batch(#[source] ArrowError),
    /// The Parquet writer could not start.
    #[error("starting the Parquet writer: {0}")]
    Start(#[source] ParquetError),
    /// Writing the batch failed.
    #[error("writing Parquet: {0}")]
    Write(#[source] ParquetError),
    /// Closing the file failed.
    #[error("finishing Parquet: {0}")]
    Finish(#[source] ParquetError),
}

/// One encoded object: its event hour, rows and bytes.
pub type RawObject = (Hour, usize, Bytes);

/// Sorts `rows` by event hour then [`SORT_KEY`], splits them by event hour,
/// and encodes one Parquet object per hour with [`raw_writer_properties`].
/// CPU-bound: run it off the async threads.
pub fn encode_by_hour(
    rows: Vec<RawRow<'_>>,
    relay: &str,
    zstd: bool,
) -> Result<Vec<RawObject>, EncodeError> {
    Ok(encode_flush(rows, relay, zstd, None)?.hours)
}

/// One flush's objects: one per event hour from `late_before` on, and one
/// late object for all the older hours' rows.
#[derive(Debug, Default)]
pub struct FlushObjects {
    /// One object per hour.
    pub hours: Vec<RawObject>,
    /// The late object (rows of every hour before `late_before`, sorted by
    /// hour, then [`SORT_KEY`]) and its row count.
    pub late: Option<(usize, Bytes)>,
}

/// Like [`encode_by_hour`], but the rows of hours before `late_before` (if
/// given) go to one late object, so a flush makes a bounded number of
/// objects whatever hours its points span.
pub fn encode_flush(
    rows: Vec<RawRow<'_>>,
    relay: &str,
    zstd: bool,
    late_before: Option<Hour>,
) -> Result<FlushObjects, EncodeError> {
    encode_flush_sets(rows, None, relay, zstd, late_before)
}

/// [`encode_flush`], with the rows' label sets coded in a [`LabelSets`]
/// (one set number per row): an hour's object cut into node groups then
/// takes its labels' codes from the sets, without reading the labels'
/// text, unless the sets have started a new generation since. The late
/// object and objects of one group (under twice [`MIN_GROUP_ROWS`] rows)
/// are written by the Arrow writer from the text.
pub fn encode_flush_sets<'a>(
    rows: Vec<RawRow<'a>>,
    sets: Option<RowSets<'a>>,
    relay: &str,
    zstd: bool,
    late_before: Option<Hour>,
) -> Result<FlushObjects, EncodeError> {
    if let Some(s) = &sets {
        assert_eq!(s.of_row.len(), rows.len(), "one label set per row");
    }
    let mut sorted = SortedRows::new(&rows, sets.as_ref());
    // Everything the encoder reads is in `sorted` now.
    drop(rows);
    let props = raw_writer_properties(zstd);
    let mut out = FlushObjects::default();
    let mut order = std::mem::take(&mut sorted.order);
    // Rows are sorted by hour first: the late ones are a prefix.
    let mut start = late_before.map_or(0, |h| order.partition_point(|(k, _)| k.hour < h));
    if start > 0 {
        // Sorted by hour before the key: not the declared order of an hour's object.
        let late_props = props
            .clone()
            .into_builder()
            .set_sorting_columns(None)
            .build();
        let bytes = encode_rows(&sorted, &order[..start], relay, &late_props)?;
        out.late = Some((start, bytes));
    }
    while start < order.len() {
        let hour = order[start].0.hour;
        let end = start + order[start..].partition_point(|(k, _)| k.hour == hour);
        let slice = &mut order[start..end];
        let groups = group_stably(slice, |(k, _)| sorted.node_buckets[k.node as usize]);
        out.hours.push((
            hour,
            slice.len(),
            encode_rows_grouped(&sorted, slice, relay, &props, &groups)?,
        ));
        start = end;
    }
    Ok(out)
}

/// Where a row goes in a flush, compared field by field in this order: the
/// event hour, then [`SORT_KEY`] with the metric and the node as their ranks
/// among the flush's distinct names (so comparing two rows compares
/// integers, not strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SortKey {
    hour: Hour,
    metric: u32,
    node: u32,
    series_id: i64,
    time: i64,
}

/// A flush's rows in encoding order, with their metric names and nodes as
/// dictionary codes.
struct SortedRows<'a> {
    /// The sort key and the row's index in `rest`, in sorted order.
    order: Vec<(SortKey, u32)>,
    /// What the key leaves out of each row, in the order of `order`, so
    /// that the columns are read in order, not from all over the flush's
    /// rows.
    rest: Vec<Rest<'a>>,
    /// Distinct node names by rank (sorted).
    nodes: Vec<&'a str>,
    /// Distinct metric names by rank (sorted).
    metrics: Vec<&'a str>,
    /// Each node's bucket ([`node_bucket`]), by rank.
    node_buckets: Vec<u16>,
    /// The label sets the rows' `set` numbers belong to, and their
    /// generation.
    sets: Option<(&'a Mutex<LabelSets>, u32)>,
}

/// The part of a row that is not in its [`SortKey`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rest<'a> {
    labels: &'a [Label],
    /// The number of the row's label set, if the flush has them
    /// ([`RowSets`]).
    set: u32,
    value: f64,
    received_at: i64,
}

impl<'a> SortedRows<'a> {
    fn new(rows: &[RawRow<'a>], sets: Option<&RowSets<'a>>) -> Self {
        let mut nodes = Codes::default();
        let mut metrics = Codes::default();
        let codes: Vec<(u32, u32)> = rows
            .iter()
            .map(|r| (metrics.code(r.metric), nodes.code(r.node)))
            .collect();
        let (metrics, metric_rank) = metrics.ranked();
        let (nodes, node_rank) = nodes.ranked();
        let set_of = sets.map(|s| &s.of_row[..]);
        let keyed = rows
            .iter()
            .zip(&codes)
            .enumerate()
            .map(|(i, (r, &(metric, node)))| {
                let key = SortKey {
                    hour: Hour::of_nanos(r.time),
                    metric: metric_rank[metric as usize],
                    node: node_rank[node as usize],
                    series_id: r.series_id,
                    time: r.time,
                };
                let rest = Rest {
                    labels: r.labels,
                    set: set_of.map_or(u32::MAX, |s| s[i]),
                    value: r.value,
                    received_at: r.received_at,
                };
                (key, rest)
            });
        let (order, rest) = sort_keys(keyed, metrics.len(), nodes.len());
        let node_buckets = nodes.iter().map(|n| node_bucket(n)).collect();
        Self {
            order,
            rest,
            nodes,
            metrics,
            node_buckets,
            sets: sets.map(|s| (s.sets, s.generation)),
        }
    }
}

/// Sorts keyed items: the keys in ascending order, and the items in the
/// same order (each key with the index of its item, which is its own
/// position). Equal keys keep their order of arrival.
///
/// A counting sort places the items by (hour, metric, node), whose ranks
/// are small and dense, in three passes over `keyed` in arrival order (the
/// hours, the count of each run, the placing), each item written once to
/// its place; each run (a node's scrape of a metric, a few hundred rows) is
/// then sorted by series and time alone, and its items put in that order,
/// in cache. Against one sort of the whole flush by the whole key, this
/// does a third of the sort's instructions, and the encoder then reads
/// each column's values in order, from memory the hardware prefetches. When
/// a flush spans more than 64 hours, or its runs would outnumber its items
/// more than four times over (many hours, metrics and nodes but few rows),
/// it is sorted whole and the items gathered in its order.
fn sort_keys<T: Copy>(
    keyed: impl ExactSizeIterator<Item = (SortKey, T)> + Clone,
    metrics: usize,
    nodes: usize,
) -> (Vec<(SortKey, u32)>, Vec<T>) {
    // At most 64 distinct hours, ascending; None if more.
    let hours = (|| {
        let mut hours: Vec<Hour> = Vec::new();
        for (k, _) in keyed.clone() {
            if hours.last() != Some(&k.hour) && !hours.contains(&k.hour) {
                if hours.len() == 64 {
                    return None;
                }
                hours.push(k.hour);
            }
        }
        hours.sort_unstable();
        Some(hours)
    })();
    let len = keyed.len();
    let runs = hours.as_ref().map_or(u64::MAX, |h| {
        (h.len() as u64)
            .saturating_mul(metrics as u64)
            .saturating_mul(nodes as u64)
    });
    let Some(hours) = hours.filter(|_| len > 0 && runs <= (len as u64).max(1 << 16) * 4) else {
        let (mut keys, items): (Vec<(SortKey, u32)>, Vec<T>) = keyed
            .enumerate()
            .map(|(i, (k, t))| ((k, i as u32), t))
            .unzip();
        keys.sort_unstable();
        let items = keys.iter().map(|&(_, at)| items[at as usize]).collect();
        for (j, k) in keys.iter_mut().enumerate() {
            k.1 = j as u32;
        }
        return (keys, items);
    };
    let run = |k: &SortKey| -> usize {
        // `hours` is short: one or two hours in a flush, at most 64.
        let h = hours.iter().position(|h| *h == k.hour).unwrap_or(0);
        (h * metrics + k.metric as usize) * nodes + k.node as usize
    };
    let starts = run_starts(runs as usize, keyed.clone().map(|(k, _)| run(&k)));
    let mut next = starts.clone();
    let mut sorted = Vec::with_capacity(len);
    let mut placed = Vec::with_capacity(len);
    for (k, item) in keyed {
        let r = run(&k);
        let at = next[r] as usize;
        next[r] += 1;
        // Every slot is written once: fill on the first key, then place.
        if sorted.is_empty() {
            sorted.resize(len, (k, 0));
            placed.resize(len, item);
        }
        sorted[at] = (k, at as u32);
        placed[at] = item;
    }
    let mut run_items = Vec::new();
    for w in starts.windows(2) {
        let (a, b) = (w[0] as usize, w[1] as usize);
        if b - a > 1 {
            // Within a run, placement order is arrival order.
            sorted[a..b].sort_unstable_by_key(|&(k, at)| (k.series_id, k.time, at));
            // The run's items in its keys' order, while they are in cache.
            run_items.clear();
            run_items.extend(sorted[a..b].iter().map(|&(_, at)| placed[at as usize]));
            placed[a..b].copy_from_slice(&run_items);
            for (j, k) in sorted[a..b].iter_mut().enumerate() {
                k.1 = (a + j) as u32;
            }
        }
    }
    (sorted, placed)
}

/// Where each of `runs` runs begins in the order of a counting sort of
/// items by run (`run_of`, each below `runs`), and where the last ends:
/// `runs + 1` positions.
fn run_starts(runs: usize, run_of: impl Iterator<Item = usize>) -> Vec<u32> {
    let mut starts = vec![0u32; runs + 1];
    for r in run_of {
        starts[r + 1] += 1;
    }
    for r in 1..starts.len() {
        starts[r] += starts[r - 1];
    }
    starts
}

/// Small integer codes for distinct strings, in order of first sight.
struct Codes<'a> {
    by_name: HashMap<&'a str, u32, BuildHasherDefault<StrHasher>>,
    names: Vec<&'a str>,
    /// Strings looked up lately, by address, with their codes: rows share
    /// the memory of their node's name (one connection's) and of their
    /// metric's (one per name in a stream, in the relay), and a string at
    /// the same address and of the same length is the same string for as
    /// long as `'a` holds. Finding it here reads neither its text nor the
    /// map.
    recent: Box<[(*const u8, usize, u32); RECENT]>,
}

/// Slots of [`Codes::recent`] (a power of two).
const RECENT: usize = 1024;

impl Default for Codes<'_> {
    fn default() -> Self {
        Self {
            by_name: HashMap::default(),
            names: Vec::new(),
            recent: Box::new([(std::ptr::null(), 0, 0); RECENT]),
        }
    }
}

impl<'a> Codes<'a> {
    fn code(&mut self, name: &'a str) -> u32 {
        let at = name.as_ptr();
        let addr = at as usize;
        let slot = &mut self.recent[((addr >> 4) ^ (addr >> 14)) & (RECENT - 1)];
        if slot.0 == at && slot.1 == name.len() {
            return slot.2;
        }
        let next = self.names.len() as u32;
        let code = *self.by_name.entry(name).or_insert(next);
        if code == next {
            self.names.push(name);
        }
        *slot = (at, name.len(), code);
        code
    }

    /// The names in ascending order, and each code's rank in it.
    fn ranked(self) -> (Vec<&'a str>, Vec<u32>) {
        let mut by_rank: Vec<u32> = (0..self.names.len() as u32).collect();
        by_rank.sort_unstable_by_key(|&c| self.names[c as usize]);
        let mut rank = vec![0; by_rank.len()];
        for (r, &c) in by_rank.iter().enumerate() {
            rank[c as usize] = r as u32;
        }
        let names = by_rank.iter().map(|&c| self.names[c as usize]).collect();
        (names, rank)
    }
}

/// xxh3 for the short strings of [`Codes`] (the default SipHash costs
/// more than the rest of a row's coding).
#[derive(Default)]
struct StrHasher(u64);

impl Hasher for StrHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Encodes the rows `slice` names (in its order) as one Parquet object.
fn encode_rows(
    sorted: &SortedRows<'_>,
    slice: &[(SortKey, u32)],
    relay: &str,
    props: &WriterProperties,
) -> Result<Bytes, EncodeError> {
    encode_rows_grouped(sorted, slice, relay, props, &[])
}

/// [`encode_rows`], cutting a data page in every column at the end of each
/// of `groups` (in row order) and listing them under [`NODE_GROUPS_KEY`];
/// fewer than two groups: as [`encode_rows`] writes, no list.
fn encode_rows_grouped(
    sorted: &SortedRows<'_>,
    slice: &[(SortKey, u32)],
    relay: &str,
    props: &WriterProperties,
    groups: &[NodeGroup],
) -> Result<Bytes, EncodeError> {
    if groups.len() >= 2 {
        return encode_coded(sorted, slice, relay, &grouped_properties(props), groups);
    }
    let batch = build_sorted_batch(sorted, slice, relay).map_err(EncodeError::Batch)?;
    let mut buf = Vec::with_capacity(slice.len() * 8);
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props.clone()))
        .map_err(EncodeError::Start)?;
    w.write(&batch).map_err(EncodeError::Write)?;
    w.close().map_err(EncodeError::Finish)?;
    Ok(Bytes::from(buf))
}

/// The leaf columns of [`raw_schema`], in order, as [`encode_coded`]
/// writes them: from codes, or (`false`) through the Arrow writer.
const LEAVES: [(&str, bool); 9] = [
    ("node", true),
    ("metric", true),
    ("labels.key_value.key", true),
    ("labels.key_value.value", true),
    ("series_id", false),
    ("time", false),
    ("value", false),
    ("received_at", false),
    ("relay", true),
];

/// An object cut into node `groups` (at least two), written with `props`
/// (from [`grouped_properties`]): the file the Arrow writer makes of
/// [`build_sorted_batch`] written a group at a time, byte for byte, with
/// the string columns written from the sort's codes ([`coded`]) and the
/// numeric ones by the Arrow writer's column writers.
fn encode_coded(
    sorted: &SortedRows<'_>,
    slice: &[(SortKey, u32)],
    relay: &str,
    props: &WriterProperties,
    groups: &[NodeGroup],
) -> Result<Bytes, EncodeError> {
    let schema = raw_schema();
    let mut buf = Vec::with_capacity(slice.len() * 8);
    // The Arrow writer's file writer: the Parquet schema and the Arrow
    // schema in the metadata, as it writes them.
    let (mut file, factory) = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props.clone()))
        .and_then(ArrowWriter::into_serialized_writer)
        .map_err(EncodeError::Start)?;
    let leaves: Vec<_> = file.schema_descr().columns().to_vec();
    let writers = factory
        .create_column_writers(0)
        .map_err(EncodeError::Start)?;
    let paths: Vec<String> = leaves.iter().map(|l| l.path().string()).collect();
    if writers.len() != LEAVES.len() || !paths.iter().eq(LEAVES.iter().map(|(p, _)| p)) {
        return Err(EncodeError::Start(ParquetError::General(format!(
            "the raw schema's leaf columns are {paths:?}, not those the encoder writes"
        ))));
    }

    // The numeric columns, a write per group: the writer ends a page after
    // each write.
    let mut writers: Vec<_> = writers.into_iter().map(Some).collect();
    for (j, array) in numeric_columns(sorted, slice).iter().enumerate() {
        // Leaves 4 to 7 are the top-level fields 3 to 6.
        let field = schema.field(3 + j);
        let w = writers[4 + j].as_mut().expect("each leaf written once");
        let mut offset = 0;
        for g in groups {
            for column in
                compute_leaves(field, &array.slice(offset, g.rows)).map_err(EncodeError::Write)?
            {
                w.write(&column).map_err(EncodeError::Write)?;
            }
            offset += g.rows;
        }
    }

    // The string columns' codes, and each group's end in them. The
    // labels' come from the flush's label sets when it has them and they
    // are still of the generation its rows were coded in; else from the
    // text, coded over the object's distinct strings.
    let sets = sorted
        .sets
        .map(|(sets, generation)| (lock_sets(sets), generation))
        .filter(|(sets, generation)| sets.generation() == *generation)
        .map(|(sets, _)| sets);
    let label_leaves = [&leaves[2], &leaves[3]];
    // The labels' two chunks, written while the sets are locked (they hold
    // the names), and only those.
    let mut label_chunks = match sets {
        Some(sets) => {
            let labels = LabelCodes::of(sorted, slice, groups, label_leaves, |rest, coded| {
                coded.extend_from_slice(sets.entries(rest.set));
            });
            [true, false].map(|keys| {
                let descr = label_leaves[usize::from(!keys)];
                coded::write_chunk(descr, props, sets.names(), labels.pages(keys))
            })
        }
        None => {
            let mut text = Codes::default();
            let labels = LabelCodes::of(sorted, slice, groups, label_leaves, |rest, coded| {
                for l in rest.labels {
                    coded.push((text.code(&l.key), text.code(&l.value)));
                }
            });
            [true, false].map(|keys| {
                let descr = label_leaves[usize::from(!keys)];
                coded::write_chunk(descr, props, &text.names, labels.pages(keys))
            })
        }
    }
    .map(Some);
    let node: Vec<u32> = slice.iter().map(|(k, _)| k.node).collect();
    let metric: Vec<u32> = slice.iter().map(|(k, _)| k.metric).collect();
    let relay_codes = vec![0u32; slice.len()];
    let flat = |codes| flat_pages(codes, groups);
    let relays = [relay];

    let mut rg = file.next_row_group().map_err(EncodeError::Write)?;
    for (leaf, descr) in leaves.iter().enumerate() {
        let writer = writers[leaf].take().expect("each leaf written once");
        if !LEAVES[leaf].1 {
            let chunk = writer.close().map_err(EncodeError::Write)?;
            chunk
                .append_to_row_group(&mut rg)
                .map_err(EncodeError::Write)?;
            continue;
        }
        let (bytes, close) = match leaf {
            0 => coded::write_chunk(descr, props, &sorted.nodes, flat(&node)),
            1 => coded::write_chunk(descr, props, &sorted.metrics, flat(&metric)),
            2 | 3 => label_chunks[leaf - 2]
                .take()
                .expect("each label chunk appended once"),
            _ => coded::write_chunk(descr, props, &relays, flat(&relay_codes)),
        }
        .map_err(EncodeError::Write)?;
        rg.append_column(&bytes, close)
            .map_err(EncodeError::Write)?;
    }
    rg.close().map_err(EncodeError::Write)?;
    file.append_key_value_metadata(KeyValue::new(
        NODE_GROUPS_KEY.into(),
        format_node_groups(groups),
    ));
    file.close().map_err(EncodeError::Finish)?;
    Ok(Bytes::from(buf))
}

/// The pages of a top-level column of `codes`, a code per row: one per
/// group.
fn flat_pages<'b>(
    codes: &'b [u32],
    groups: &'b [NodeGroup],
) -> impl Iterator<Item = coded::CodedPage<'b>> {
    let mut start = 0;
    groups.iter().map(move |g| {
        let page = coded::CodedPage {
            rows: g.rows,
            codes: &codes[start..start + g.rows],
            levels: None,
        };
        start += g.rows;
        page
    })
}

/// The `labels` map of an object's rows as codes and levels: each row's
/// (key, value) codes, coded once per series (rows of a series are
/// adjacent in an object, and share their labels' memory).
struct LabelCodes {
    keys: Vec<u32>,
    values: Vec<u32>,
    key_def: Vec<i16>,
    value_def: Vec<i16>,
    rep: Vec<i16>,
    /// Per group: its rows, and where it ends in the levels and in the
    /// codes.
    ends: Vec<(usize, usize, usize)>,
}

impl LabelCodes {
    /// The codes of the rows `slice` names, in `groups`; `code` gives the
    /// codes of a row's labels (called once per series).
    fn of<'a>(
        sorted: &SortedRows<'a>,
        slice: &[(SortKey, u32)],
        groups: &[NodeGroup],
        [key, value]: [&ColumnDescPtr; 2],
        mut code: impl FnMut(&Rest<'a>, &mut Vec<(u32, u32)>),
    ) -> Self {
        let entries: usize = slice
            .iter()
            .map(|(_, i)| sorted.rest[*i as usize].labels.len().max(1))
            .sum();
        let mut out = Self {
            keys: Vec::with_capacity(entries),
            values: Vec::with_capacity(entries),
            key_def: Vec::with_capacity(entries),
            value_def: Vec::with_capacity(entries),
            rep: Vec::with_capacity(entries),
            ends: Vec::with_capacity(groups.len()),
        };
        // An entry is present at the key's and the value's deepest level
        // (a value is never null); a row of no labels is one level at 0.
        let (key_def, value_def) = (key.max_def_level(), value.max_def_level());
        let mut last: Option<&[Label]> = None;
        let mut coded: Vec<(u32, u32)> = Vec::new();
        let mut rows = slice.iter();
        for g in groups {
            for (_, i) in rows.by_ref().take(g.rows) {
                let rest = &sorted.rest[*i as usize];
                if !last.is_some_and(|l| std::ptr::eq(l, rest.labels)) {
                    coded.clear();
                    code(rest, &mut coded);
                    last = Some(rest.labels);
                }
                if coded.is_empty() {
                    out.key_def.push(0);
                    out.value_def.push(0);
                    out.rep.push(0);
                }
                for (j, &(k, v)) in coded.iter().enumerate() {
                    out.keys.push(k);
                    out.values.push(v);
                    out.key_def.push(key_def);
                    out.value_def.push(value_def);
                    out.rep.push(i16::from(j > 0));
                }
            }
            out.ends.push((g.rows, out.rep.len(), out.keys.len()));
        }
        out
    }

    /// The pages of the keys' column (`keys`) or the values'.
    fn pages(&self, keys: bool) -> impl Iterator<Item = coded::CodedPage<'_>> {
        let (codes, def) = if keys {
            (&self.keys, &self.key_def)
        } else {
            (&self.values, &self.value_def)
        };
        let (mut level, mut code) = (0, 0);
        self.ends.iter().map(move |&(rows, level_end, code_end)| {
            let page = coded::CodedPage {
                rows,
                codes: &codes[code..code_end],
                levels: Some((&def[level..level_end], &self.rep[level..level_end])),
            };
            (level, code) = (level_end, code_end);
            page
        })
    }
}

/// Writer properties of an object cut into node groups: `props`, with one
/// row group whatever its size, and a data page ended after each write and
/// only then, so that each write (a node group) is one page in every
/// column.
///
/// The writer checks its page limits after each mini-batch, and ends the
/// page if it holds at least `data_page_row_count_limit` rows or
/// `data_page_size_limit` bytes. A mini-batch is `write_batch_size`
/// levels, or, for a nested column whose levels are all alike (the
/// `labels` map when every row of a write has no entry, or one), that row
/// limit. So: the batch size and the dictionary page limit are out of
/// reach (a mini-batch is a whole write), and the page is ended after it by
/// a row limit of 1, except in the `labels` columns, where a row limit of
/// 1 would make a page per row: there the row limit is out of reach and
/// the byte limit 1 byte. The test
/// `an_hours_object_has_a_page_per_node_group_in_every_column` checks the
/// pages with rows of no label, of one, and of several.
///
/// A page cut elsewhere (another version of the writer) costs a shard some
/// bytes, not rows: the compactor reads the pages that overlap its rows,
/// by the offset index. The declared sort order holds within each group
/// only, so none is declared.
fn grouped_properties(props: &WriterProperties) -> WriterProperties {
    // Page sizes are i32 in the format; no page of a raw object nears it.
    const OUT_OF_REACH: usize = i32::MAX as usize;
    let mut b = props.clone().into_builder();
    for leaf in ["key", "value"] {
        let path = || ColumnPath::new(vec!["labels".into(), "key_value".into(), leaf.into()]);
        b = b
            .set_column_data_page_row_count_limit(path(), OUT_OF_REACH)
            .set_column_data_page_size_limit(path(), 1);
    }
    b.set_sorting_columns(None)
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_write_batch_size(OUT_OF_REACH)
        .set_data_page_row_count_limit(1)
        .set_data_page_size_limit(OUT_OF_REACH)
        .set_dictionary_page_size_limit(OUT_OF_REACH)
        .build()
}

/// The record batch of the rows `slice` names, in its order: the same
/// batch as [`build_raw_batch`] of those rows, built column by column from
/// the sort's codes (node, metric and relay as dictionary keys over the
/// flush's distinct names; the writer keeps only the ones used).
fn build_sorted_batch(
    sorted: &SortedRows<'_>,
    slice: &[(SortKey, u32)],
    relay: &str,
) -> Result<RecordBatch, ArrowError> {
    let n = slice.len();
    let dict = |keys: Vec<i32>, names: &[&str]| -> Result<ArrayRef, ArrowError> {
        let values: ArrayRef = Arc::new(StringArray::from_iter_values(names));
        Ok(Arc::new(DictionaryArray::try_new(
            Int32Array::from(keys),
            values,
        )?))
    };
    let node = dict(
        slice.iter().map(|(k, _)| k.node as i32).collect(),
        &sorted.nodes,
    )?;
    let metric = dict(
        slice.iter().map(|(k, _)| k.metric as i32).collect(),
        &sorted.metrics,
    )?;
    let relay_col = dict(vec![0; n], &[relay])?;
    // Sized by the entries alone: summing the strings' lengths first would
    // read every series' labels twice, and a flush's labels are spread over
    // more memory than the caches hold. The string buffers grow as needed.
    let entries = slice
        .iter()
        .map(|(_, i)| sorted.rest[*i as usize].labels.len())
        .sum();
    let mut labels = map_builder_with_capacity(n, entries, entries * 8);
    for (_, i) in slice {
        for l in sorted.rest[*i as usize].labels {
            labels.keys().append_value(&l.key);
            labels.values().append_value(&l.value);
        }
        labels.append(true)?;
    }
    let [series, time, value, received] = numeric_columns(sorted, slice);
    let columns: Vec<ArrayRef> = vec![
        node,
        metric,
        Arc::new(labels.finish()),
        series,
        time,
        value,
        received,
        relay_col,
    ];
    RecordBatch::try_new(raw_schema(), columns)
}

/// The numeric columns of the rows `slice` names, in its order and the
/// schema's: `series_id`, `time`, `value`, `received_at`.
fn numeric_columns(sorted: &SortedRows<'_>, slice: &[(SortKey, u32)]) -> [ArrayRef; 4] {
    let key = |f: fn(&SortKey) -> i64| -> Vec<i64> { slice.iter().map(|(k, _)| f(k)).collect() };
    let rest = |i: &u32| &sorted.rest[*i as usize];
    [
        Arc::new(Int64Array::from(key(|k| k.series_id))),
        Arc::new(TimestampNanosecondArray::from(key(|k| k.time)).with_timezone("UTC")),
        Arc::new(Float64Array::from(
            slice.iter().map(|(_, i)| rest(i).value).collect::<Vec<_>>(),
        )),
        Arc::new(
            TimestampNanosecondArray::from(
                slice
                    .iter()
                    .map(|(_, i)| rest(i).received_at)
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
    ]
}

// ---- Node groups: pages a compactor shard can read alone --------------
//
// An hour's object is ordered by node group first (the top bits of
// `node_bucket`), then by `SORT_KEY`, in one row group with a data page
// per group in every column, so that a compactor shard (`xxh3_64(node) %
// N`) of a power-of-two N reads only its groups' pages, by the offset
// index (docs/data.md, "Pages by node bucket").

/// Key-value metadata key listing an object's node groups, in row order:
/// `start-end:rows` per group (buckets `start..end`, end exclusive, in
/// `0..=65536`), comma-separated. Objects without it are read whole.
pub const NODE_GROUPS_KEY: &str = "horizon.node_groups";

/// At most `1 << MAX_GROUP_BITS` node groups per object.
pub const MAX_GROUP_BITS: u32 = 4;

/// An object is cut into fewer groups when its groups would hold fewer
/// rows than this on average: each group is a page in each of the nine
/// leaf columns, about 30 bytes of page header and offset index each,
/// and compresses a little worse the smaller it is (128 rather than 1,024:
/// on the synthetic hour, 2% more bytes, and a compactor shard of 16
/// reads a quarter less).
pub const MIN_GROUP_ROWS: usize = 128;

/// A node's bucket: the low 16 bits of XXH3-64 of its name, bit-reversed.
/// The compactor's shard of a node is `xxh3_64 % N`; for N a power of two
/// that is the low bits of the hash, so the top bits of the bucket: the
/// nodes of one shard have one contiguous range of buckets.
pub fn node_bucket(node: &str) -> u16 {
    (xxhash_rust::xxh3::xxh3_64(node.as_bytes()) as u16).reverse_bits()
}

/// One node group of an object: its bucket range and its row count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroup {
    /// Buckets of the group, end exclusive (`0..65536` is every bucket).
    pub buckets: std::ops::Range<u32>,
    /// Rows in it.
    pub rows: usize,
}

/// Reorders `rows` (sorted by [`SORT_KEY`]) by node group, stably (each
/// group stays in key order), and returns the non-empty groups in order.
/// Small slices get fewer groups ([`MIN_GROUP_ROWS`]).
pub fn group_by_node(rows: &mut [RawRow<'_>]) -> Vec<NodeGroup> {
    group_stably(rows, |r| node_bucket(r.node))
}

/// [`group_by_node`] for any items, given each one's node bucket: a
/// counting sort by group, one pass to count and one to place.
fn group_stably<T: Copy>(items: &mut [T], bucket: impl Fn(&T) -> u16) -> Vec<NodeGroup> {
    let bits = (0..=MAX_GROUP_BITS)
        .rev()
        .find(|&b| items.len() >> b >= MIN_GROUP_ROWS)
        .unwrap_or(0);
    let width = 1u32 << (16 - bits);
    if bits == 0 {
        return vec![NodeGroup {
            buckets: 0..1 << 16,
            rows: items.len(),
        }];
    }
    let group: Vec<u8> = items
        .iter()
        .map(|i| (u32::from(bucket(i)) / width) as u8)
        .collect();
    let starts = run_starts(1 << bits, group.iter().map(|&g| usize::from(g)));
    let mut at = starts.clone();
    let mut placed = items.to_vec();
    for (item, &g) in items.iter().zip(&group) {
        placed[at[usize::from(g)] as usize] = *item;
        at[usize::from(g)] += 1;
    }
    items.copy_from_slice(&placed);
    starts
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] > w[0])
        .map(|(g, w)| NodeGroup {
            buckets: g as u32 * width..(g as u32 + 1) * width,
            rows: (w[1] - w[0]) as usize,
        })
        .collect()
}

fn format_node_groups(groups: &[NodeGroup]) -> String {
    let parts: Vec<String> = groups
        .iter()
        .map(|g| format!("{}-{}:{}", g.buckets.start, g.buckets.end, g.rows))
        .collect();
    parts.join(",")
}

/// The node groups of an object of `rows` rows (its key-value metadata
/// [`NODE_GROUPS_KEY`]), or `None` when not well formed: ranges in
/// ascending order, not overlapping, within `0..=65536`, and row counts
/// adding up to `rows` (the object is then read whole).
pub fn parse_node_groups(value: &str, rows: u64) -> Option<Vec<NodeGroup>> {
    let groups = value
        .split(',')
        .map(|p| {
            let (range, n) = p.split_once(':')?;
            let (a, b) = range.split_once('-')?;
            let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
            let n = n.parse::<usize>().ok()?;
            (a < b && b <= 1 << 16).then_some(NodeGroup {
                buckets: a..b,
                rows: n,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let ordered = groups
        .windows(2)
        .all(|w| w[0].buckets.end <= w[1].buckets.start);
    let total = groups
        .iter()
        .try_fold(0u64, |t, g| t.checked_add(g.rows as u64));
    (ordered && total == Some(rows)).then_some(groups)
}

/// A point for [`encode_raw_objects`].
#[derive(Debug, Clone)]
pub struct RawPoint {
    /// Node identity.
    pub node: String,
    /// Metric name.
    pub metric: String,
    /// Labels, in canonical order (sorted by key).
    pub labels: Vec<Label>,
    /// Event time, Unix ns.
    pub time: i64,
    /// Value.
    pub value: f64,
    /// When a relay received the point, Unix ns.
    pub received_at: i64,
}

impl RawPoint {
    /// The row a relay encodes for this point (its series id is the hash of
    /// its metric and labels).
    pub fn row(&self) -> RawRow<'_> {
        RawRow {
            node: &self.node,
            metric: &self.metric,
            labels: &self.labels,
            series_id: series_hash(&self.metric, &self.labels) as i64,
            time: self.time,
            value: self.value,
            received_at: self.received_at,
        }
    }
}

/// Encodes points exactly as a relay's Parquet sink does (sorted, split by
/// event hour, one object per hour, snappy), for tools and tests that need
/// raw objects without running a relay. Returns each hour with its row
/// count and object bytes.
pub fn encode_raw_objects(points: &[RawPoint], relay: &str) -> Result<Vec<RawObject>, EncodeError> {
    let rows = points.iter().map(RawPoint::row).collect();
    encode_by_hour(rows, relay, false)
}

/// A schema that is not the raw schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaMismatch {
    /// The column count differs.
    #[error("{got} columns, the raw schema has {want}")]
    Columns {
        /// Columns found.
        got: usize,
        /// Columns of the raw schema.
        want: usize,
    },
    /// A column differs in name or type.
    #[error(
        "column {got:?} of type {got_type} where the raw schema has {want:?} of type {want_type}"
    )]
    Column {
        /// The column's name.
        got: String,
        /// Its type.
        got_type: String,
        /// The raw schema's column at that position.
        want: String,
        /// Its type.
        want_type: String,
    },
}

/// Checks that a schema read from a raw object is the raw schema (names
/// and types; metadata aside).
pub fn check_schema(schema: &Schema) -> Result<(), SchemaMismatch> {
    let want = raw_schema();
    if schema.fields().len() != want.fields().len() {
        return Err(SchemaMismatch::Columns {
            got: schema.fields().len(),
            want: want.fields().len(),
        });
    }
    for (got, want) in schema.fields().iter().zip(want.fields()) {
        if got.name() != want.name() || got.data_type() != want.data_type() {
            return Err(SchemaMismatch::Column {
                got: got.name().clone(),
                got_type: got.data_type().to_string(),
                want: want.name().clone(),
                want_type: want.data_type().to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn the_declared_order_is_the_one_objects_always_had() {
        // Objects written before the order had a name declared 1, 0, 3, 4.
        let idx: Vec<i32> = sorting_columns().iter().map(|c| c.column_idx).collect();
        assert_eq!(idx, [1, 0, 3, 4]);
        assert_eq!(column_indices(SORT_KEY).unwrap(), [1, 0, 3, 4]);
    }

    #[test]
    fn encodes_one_sorted_object_per_hour() {
        let label = |v: &str| {
            vec![Label {
                key: "gpu".into(),
                value: v.into(),
            }]
        };
        let hour = 3_600_000_000_000i64 * 490_000;
        let p = |node: &str, metric: &str, gpu: &str, time: i64| RawPoint {
            node: node.into(),
            metric: metric.into(),
            labels: label(gpu),
            time,
            value: 1.0,
            received_at: time + 5,
        };
        let points = [
            p("b", "m", "0", hour + 2),
            p("a", "m", "0", hour + 1),
            p("a", "l", "0", hour + 3_600_000_000_000),
            p("a", "m", "0", hour),
        ];
        let objects = encode_raw_objects(&points, "relay-1").unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].0, Hour::of_nanos(hour));
        assert_eq!((objects[0].1, objects[1].1), (3, 1));
        let reader = SerializedFileReader::new(objects[0].2.clone()).unwrap();
        let meta = reader.metadata().file_metadata();
        let kv = meta.key_value_metadata().unwrap();
        assert_eq!(kv[0].key, SCHEMA_KEY);
        assert_eq!(kv[0].value.as_deref(), Some(SCHEMA_VERSION));
        let sorted = reader.metadata().row_group(0).sorting_columns().unwrap();
        assert_eq!(sorted, &sorting_columns());
        let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            objects[0].2.clone(),
            1024,
        )
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
        check_schema(&batch.schema()).unwrap();
        let time = batch
            .column(4)
            .as_any()
            .downcast_ref::<arrow_array::TimestampNanosecondArray>()
            .unwrap();
        assert_eq!(time.values(), &[hour, hour + 1, hour + 2]);
    }

    #[test]
    fn a_flush_puts_old_hours_in_one_late_object() {
        let h = 3_600_000_000_000i64 * 490_000;
        let p = |time: i64| RawPoint {
            node: "n".into(),
            metric: "m".into(),
            labels: Vec::new(),
            time,
            value: 1.0,
            received_at: h + 9,
        };
        let points: Vec<RawPoint> = [h, h - 1, h - 3_600_000_000_000 * 30, h + 3_600_000_000_000]
            .into_iter()
            .map(p)
            .collect();
        let rows = points
            .iter()
            .map(|p| RawRow {
                node: &p.node,
                metric: &p.metric,
                labels: &p.labels,
                series_id: 7,
                time: p.time,
                value: p.value,
                received_at: p.received_at,
            })
            .collect();
        let out = encode_flush(rows, "r", false, Some(Hour::of_nanos(h))).unwrap();
        let hours: Vec<(Hour, usize)> = out.hours.iter().map(|o| (o.0, o.1)).collect();
        assert_eq!(
            hours,
            [
                (Hour::of_nanos(h), 1),
                (Hour::of_nanos(h + 3_600_000_000_000), 1)
            ]
        );
        let (n, bytes) = out.late.unwrap();
        assert_eq!(n, 2, "both old hours in one object");
        let reader = SerializedFileReader::new(bytes).unwrap();
        assert!(reader.metadata().row_group(0).sorting_columns().is_none());
    }

    /// The encoder as it was: rows sorted by comparing strings, the batch
    /// built row by row with [`build_raw_batch`].
    fn reference_object(mut rows: Vec<RawRow<'_>>, relay: &str, zstd: bool) -> Bytes {
        rows.sort_by(|a, b| {
            a.metric
                .cmp(b.metric)
                .then_with(|| a.node.cmp(b.node))
                .then_with(|| a.series_id.cmp(&b.series_id))
                .then_with(|| a.time.cmp(&b.time))
        });
        let groups = group_by_node(&mut rows);
        let batch = build_raw_batch(rows.into_iter(), relay).unwrap();
        let mut buf = Vec::new();
        let props = grouped_properties(&raw_writer_properties(zstd));
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        let mut offset = 0;
        for g in &groups {
            w.write(&batch.slice(offset, g.rows)).unwrap();
            offset += g.rows;
        }
        w.append_key_value_metadata(KeyValue::new(
            NODE_GROUPS_KEY.into(),
            format_node_groups(&groups),
        ));
        w.close().unwrap();
        Bytes::from(buf)
    }

    /// Keys of `rows` rows drawn from small ranges, so that runs, equal
    /// series and equal keys all occur.
    fn drawn_keys(rows: usize, hours: i64, metrics: u32, nodes: u32) -> Vec<SortKey> {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut draw = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        (0..rows)
            .map(|_| {
                let hour = 1_800_000_000 + 3600 * draw(hours as u64) as i64;
                SortKey {
                    hour: Hour::of_nanos(hour * 1_000_000_000),
                    metric: draw(u64::from(metrics)) as u32,
                    node: draw(u64::from(nodes)) as u32,
                    series_id: draw(20) as i64 - 10,
                    time: hour * 1_000_000_000 + draw(3) as i64,
                }
            })
            .collect()
    }

    #[test]
    fn runs_sorted_apart_give_the_order_of_one_sort_of_the_whole_key() {
        // The counting sort by (hour, metric, node) with sorted runs, and
        // the whole sort it falls back to when runs would outnumber rows or
        // hours are more than 64.
        for (rows, hours, metrics, nodes) in [
            (20_000, 3, 5, 7),
            (20_000, 1, 1, 1),
            (1, 1, 1, 1),
            (0, 1, 1, 1),
            (50, 2, 3000, 3000),
            (5_000, 100, 2, 2),
        ] {
            let keys = drawn_keys(rows, hours, metrics, nodes);
            let mut want: Vec<(SortKey, u32)> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| (*k, i as u32))
                .collect();
            want.sort();
            // Each key carries its arrival index as its item.
            let keyed = keys.iter().enumerate().map(|(i, k)| (*k, i as u32));
            let (order, items) = sort_keys(keyed, metrics as usize, nodes as usize);
            let got: Vec<(SortKey, u32)> = order
                .iter()
                .map(|(k, at)| (*k, items[*at as usize]))
                .collect();
            assert_eq!(got, want, "{rows} rows, {hours} h, {metrics} m, {nodes} n");
        }
    }

    #[test]
    fn objects_are_the_bytes_the_row_by_row_encoder_wrote() {
        // Names that sort otherwise than they first appear, equal names in
        // distinct memory, series with no labels: the string columns are
        // written from codes (`coded`), and must be what the Arrow writer
        // makes of the strings.
        let names = |v: &[&str]| -> Vec<String> { v.iter().map(|s| (*s).to_owned()).collect() };
        let nodes = names(&["n-b", "n-a", "n-c", "n-a", "m"]);
        let metrics = names(&["zeta", "alpha", "mid", "alpha"]);
        let labels: Vec<Vec<Label>> = (0..7)
            .map(|i| {
                (0..i % 3)
                    .map(|k| Label {
                        key: format!("k{k}"),
                        value: format!("v{}", i * 7 % 5),
                    })
                    .collect()
            })
            .collect();
        same_bytes_as_the_row_by_row_encoder(&nodes, &metrics, &labels, false);

        // Many nodes and groups, and hundreds of label values, first seen
        // group after group: the dictionary's bit width grows from page to
        // page. Compressed with zstd.
        let nodes: Vec<String> = (0..64).map(|n| format!("node-{n}")).collect();
        let metrics: Vec<String> = (0..9).map(|m| format!("metric_{}", 9 - m)).collect();
        let labels: Vec<Vec<Label>> = (0..700)
            .map(|i| {
                (0..i % 4)
                    .map(|k| Label {
                        key: format!("key{}", (i + k) % 5),
                        value: format!("value-{}", (i * 13 + k) % 450),
                    })
                    .collect()
            })
            .collect();
        same_bytes_as_the_row_by_row_encoder(&nodes, &metrics, &labels, true);

        // Every row with one label, then none: the levels of each page all
        // alike.
        for entries in [1, 0] {
            let labels: Vec<Vec<Label>> = (0..30)
                .map(|i| {
                    (0..entries)
                        .map(|_| Label {
                            key: "gpu".into(),
                            value: format!("{i}"),
                        })
                        .collect()
                })
                .collect();
            same_bytes_as_the_row_by_row_encoder(&nodes, &metrics, &labels, false);
        }
    }

    /// Encodes 20,000 rows in no order, with distinct keys (so the order is
    /// total), of the given nodes, metrics and label sets drawn at random,
    /// and checks the object is cut into node groups and is the bytes of
    /// [`reference_object`].
    fn same_bytes_as_the_row_by_row_encoder(
        nodes: &[String],
        metrics: &[String],
        labels: &[Vec<Label>],
        zstd: bool,
    ) {
        let hour = 3_600_000_000_000i64 * 490_000;
        let mut rows = Vec::new();
        let mut label_set = Vec::new();
        let mut x = 17u64;
        for i in 0..20_000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let node = &nodes[(x >> 33) as usize % nodes.len()];
            let metric = &metrics[(x >> 40) as usize % metrics.len()];
            let l = (x >> 20) as usize % labels.len();
            label_set.push(l);
            rows.push(RawRow {
                node,
                metric,
                labels: &labels[l],
                series_id: l as i64 - 3,
                // Distinct per row: the key is total.
                time: hour + i as i64 * 1000 + (x >> 50) as i64 % 1000,
                value: (x >> 11) as f64,
                received_at: hour + (x >> 45) as i64,
            });
        }
        let reference = reference_object(rows.clone(), "relay-7", zstd);
        // The labels coded from their text, from label sets (a slot per
        // series, as the relay keeps them), and from label sets renewed
        // after the rows were coded (so coded from the text again).
        let slots: Vec<LabelSlot> = labels.iter().map(|_| LabelSlot::default()).collect();
        let sets = Mutex::new(LabelSets::new());
        for how in ["text", "sets", "renewed sets"] {
            let row_sets = (how != "text").then(|| {
                let mut s = lock_sets(&sets);
                let generation = s.generation();
                let of_row = label_set
                    .iter()
                    .map(|&l| s.set_of(&slots[l], &labels[l]))
                    .collect();
                if how == "renewed sets" {
                    *s = LabelSets::new();
                }
                RowSets {
                    sets: &sets,
                    generation,
                    of_row,
                }
            });
            let out = encode_flush_sets(rows.clone(), row_sets, "relay-7", zstd, None).unwrap();
            let case = format!("{how}, {} label sets, zstd {zstd}", labels.len());
            one_object_as_the_reference(&out, rows.len(), &reference, &case);
        }
    }

    fn one_object_as_the_reference(out: &FlushObjects, rows: usize, reference: &Bytes, how: &str) {
        assert_eq!(out.hours.len(), 1);
        assert_eq!(out.hours[0].1, rows);
        let kv = SerializedFileReader::new(out.hours[0].2.clone())
            .unwrap()
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap_or_default();
        let groups = kv.iter().find(|k| k.key == NODE_GROUPS_KEY);
        assert!(groups.is_some(), "cut into node groups: {kv:?}");
        assert!(
            out.hours[0].2 == *reference,
            "the object differs from the row-by-row encoder's (labels from {how})"
        );
    }

    #[test]
    fn an_hours_object_has_a_page_per_node_group_in_every_column() {
        // Rows of 0 to 2 labels, then of none, then of one each (the
        // writer takes the map's levels otherwise when they are all alike).
        for shape in [3, 1, 2] {
            one_page_per_node_group(shape);
        }
    }

    /// An object of rows with `i % 3` labels (`shape` 3), none (1) or one
    /// each (2), checked.
    fn one_page_per_node_group(shape: usize) {
        let h = 3_600_000_000_000i64 * 490_000;
        let nodes: Vec<String> = (0..64).map(|n| format!("node-{n}")).collect();
        let points: Vec<RawPoint> = (0..20_000)
            .map(|i| RawPoint {
                node: nodes[i % 64].clone(),
                metric: format!("m{}", i % 3),
                labels: (0..[0, 0, 1, i % 3][shape])
                    .map(|k| Label {
                        key: format!("k{k}"),
                        value: format!("v{}", i % 7),
                    })
                    .collect(),
                time: h + i as i64,
                value: i as f64,
                received_at: h,
            })
            .collect();
        let objects = encode_raw_objects(&points, "r").unwrap();
        let bytes = objects[0].2.clone();
        let options = parquet::file::serialized_reader::ReadOptionsBuilder::new()
            .with_page_index()
            .build();
        let reader = SerializedFileReader::new_with_options(bytes.clone(), options).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 1);
        assert!(meta.row_group(0).sorting_columns().is_none());
        let kv = meta.file_metadata().key_value_metadata().unwrap();
        let value = kv
            .iter()
            .find(|k| k.key == NODE_GROUPS_KEY)
            .and_then(|k| k.value.clone())
            .expect("node groups listed");
        let groups = parse_node_groups(&value, 20_000).expect("well formed");
        assert_eq!(groups.len(), 16, "20,000 rows of 64 nodes: 16 groups");
        // Every column, the map's keys and values among them, has a page
        // starting at each group's first row and no other.
        let starts: Vec<i64> = groups
            .iter()
            .scan(0i64, |at, g| {
                let s = *at;
                *at += g.rows as i64;
                Some(s)
            })
            .collect();
        let index = meta.page_index().expect("page index read");
        assert_eq!(meta.row_group(0).num_columns(), 9, "nine leaf columns");
        for c in 0..9 {
            let firsts: Vec<i64> = index
                .page_locations(0, c)
                .expect("offset index written")
                .iter()
                .map(|p| p.first_row_index)
                .collect();
            assert!(
                firsts == starts,
                "labels of shape {shape}, column {c}: pages at {:?}…, {} in all",
                &firsts[..firsts.len().min(20)],
                firsts.len()
            );
        }
        // The rows of each group: its nodes only, in key order.
        let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .with_batch_size(1 << 20)
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let strings = |c: usize| -> Vec<String> {
            use arrow_array::cast::AsArray;
            let d = batch
                .column(c)
                .as_dictionary::<arrow_array::types::Int32Type>();
            let v = d.values().as_string::<i32>();
            d.keys()
                .values()
                .iter()
                .map(|&k| v.value(k as usize).to_owned())
                .collect()
        };
        let (nodes, metrics) = (strings(0), strings(1));
        for (g, &start) in groups.iter().zip(&starts) {
            let start = start as usize;
            for r in start..start + g.rows {
                assert!(g.buckets.contains(&u32::from(node_bucket(&nodes[r]))));
                if r > start {
                    assert!((&metrics[r - 1], &nodes[r - 1]) <= (&metrics[r], &nodes[r]));
                }
            }
        }
    }

    #[test]
    fn small_objects_get_fewer_groups() {
        let row = |node: &'static str| RawRow {
            node,
            metric: "m",
            labels: &[],
            series_id: 1,
            time: 0,
            value: 0.0,
            received_at: 0,
        };
        let mut few = vec![row("a"); 100];
        assert_eq!(
            group_by_node(&mut few),
            [NodeGroup {
                buckets: 0..65536,
                rows: 100
            }]
        );
        let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
        let mut some: Vec<RawRow<'_>> = (0..512)
            .map(|i| RawRow {
                node: &names[i % 100],
                ..row("")
            })
            .collect();
        let groups = group_by_node(&mut some);
        assert_eq!(groups.len(), 4, "512 rows: four groups of 128 on average");
        assert_eq!(groups.iter().map(|g| g.rows).sum::<usize>(), 512);
        let mut at = 0;
        for g in &groups {
            for r in &some[at..at + g.rows] {
                assert!(g.buckets.contains(&u32::from(node_bucket(r.node))));
            }
            at += g.rows;
        }
    }

    #[test]
    fn group_lists_must_be_ordered_and_add_up_to_the_rows() {
        let g = |a: u32, b: u32, rows: usize| NodeGroup {
            buckets: a..b,
            rows,
        };
        assert_eq!(
            parse_node_groups("0-32768:5,32768-65536:7", 12),
            Some(vec![g(0, 32768, 5), g(32768, 65536, 7)])
        );
        assert_eq!(
            parse_node_groups(&format_node_groups(&[g(4096, 8192, 3)]), 3),
            Some(vec![g(4096, 8192, 3)])
        );
        assert_eq!(parse_node_groups("0-32768:5,32768-65536:7", 13), None);
        assert_eq!(parse_node_groups("32768-65536:7,0-32768:5", 12), None);
        assert_eq!(parse_node_groups("0-70000:1", 1), None);
        assert_eq!(parse_node_groups("5-5:1", 1), None);
        assert_eq!(parse_node_groups("0-2", 0), None);
        assert_eq!(parse_node_groups("0-1:18446744073709551615,1-2:1", 0), None);
        assert_eq!(parse_node_groups("x", 1), None);
    }

    #[test]
    fn schema_check_names_the_column() {
        let ok = raw_schema();
        assert!(check_schema(&ok).is_ok());
        let other = Schema::new(vec![arrow_schema::Field::new(
            "x",
            arrow_schema::DataType::Int64,
            false,
        )]);
        assert!(
            check_schema(&other)
                .unwrap_err()
                .to_string()
                .contains("columns")
        );
    }

    #[test]
    fn a_different_schema_is_named() {
        let s = Schema::new(vec![arrow_schema::Field::new(
            "x",
            arrow_schema::DataType::Int64,
            false,
        )]);
        assert_eq!(
            check_schema(&s).unwrap_err().to_string(),
            "1 columns, the raw schema has 8"
        );
    }
}
