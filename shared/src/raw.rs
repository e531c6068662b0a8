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
use std::sync::Arc;

use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::WriterProperties;

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
/// the metadata, the sort order declared.
pub fn raw_writer_properties(zstd: bool) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(if zstd {
            Compression::ZSTD(ZstdLevel::default())
        } else {
            Compression::SNAPPY
        })
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
    let sorted = SortedRows::new(&rows);
    let props = raw_writer_properties(zstd);
    let mut out = FlushObjects::default();
    let order = &sorted.order;
    // Rows are sorted by hour first: the late ones are a prefix.
    let mut start = late_before.map_or(0, |h| order.partition_point(|(k, _)| k.hour < h));
    if start > 0 {
        // Sorted by hour before the key: not the declared order of an hour's object.
        let late_props = props
            .clone()
            .into_builder()
            .set_sorting_columns(None)
            .build();
        let bytes = encode_rows(&rows, &sorted, &order[..start], relay, &late_props)?;
        out.late = Some((start, bytes));
    }
    while start < order.len() {
        let hour = order[start].0.hour;
        let end = start + order[start..].partition_point(|(k, _)| k.hour == hour);
        let slice = &order[start..end];
        out.hours.push((
            hour,
            slice.len(),
            encode_rows(&rows, &sorted, slice, relay, &props)?,
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
    /// The sort key and the index in the rows, in sorted order.
    order: Vec<(SortKey, u32)>,
    /// Distinct node names by rank (sorted), and each row's rank.
    nodes: Vec<&'a str>,
    /// Distinct metric names by rank (sorted).
    metrics: Vec<&'a str>,
}

impl<'a> SortedRows<'a> {
    fn new(rows: &[RawRow<'a>]) -> Self {
        let mut nodes = Codes::default();
        let mut metrics = Codes::default();
        let codes: Vec<(u32, u32)> = rows
            .iter()
            .map(|r| (metrics.code(r.metric), nodes.code(r.node)))
            .collect();
        let (metrics, metric_rank) = metrics.ranked();
        let (nodes, node_rank) = nodes.ranked();
        let mut order: Vec<(SortKey, u32)> = rows
            .iter()
            .zip(codes)
            .enumerate()
            .map(|(i, (r, (metric, node)))| {
                let key = SortKey {
                    hour: Hour::of_nanos(r.time),
                    metric: metric_rank[metric as usize],
                    node: node_rank[node as usize],
                    series_id: r.series_id,
                    time: r.time,
                };
                (key, i as u32)
            })
            .collect();
        order.sort_unstable_by_key(|&(k, _)| k);
        Self {
            order,
            nodes,
            metrics,
        }
    }
}

/// Small integer codes for distinct strings, in order of first sight.
#[derive(Default)]
struct Codes<'a> {
    by_name: HashMap<&'a str, u32, BuildHasherDefault<StrHasher>>,
    names: Vec<&'a str>,
    /// The last string looked up and its code: consecutive rows often
    /// share a node (one submission) and its memory.
    last: Option<(&'a str, u32)>,
}

impl<'a> Codes<'a> {
    fn code(&mut self, name: &'a str) -> u32 {
        if let Some((last, code)) = self.last
            && std::ptr::eq(last, name)
        {
            return code;
        }
        let next = self.names.len() as u32;
        let code = *self.by_name.entry(name).or_insert(next);
        if code == next {
            self.names.push(name);
        }
        self.last = Some((name, code));
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
    rows: &[RawRow<'_>],
    sorted: &SortedRows<'_>,
    slice: &[(SortKey, u32)],
    relay: &str,
    props: &WriterProperties,
) -> Result<Bytes, EncodeError> {
    let batch = build_sorted_batch(rows, sorted, slice, relay).map_err(EncodeError::Batch)?;
    let mut buf = Vec::with_capacity(slice.len() * 8);
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props.clone()))
        .map_err(EncodeError::Start)?;
    w.write(&batch).map_err(EncodeError::Write)?;
    w.close().map_err(EncodeError::Finish)?;
    Ok(Bytes::from(buf))
}

/// The record batch of the rows `slice` names, in its order: the same
/// batch as [`build_raw_batch`] of those rows, built column by column from
/// the sort's codes (node, metric and relay as dictionary keys over the
/// flush's distinct names; the writer keeps only the ones used).
fn build_sorted_batch(
    rows: &[RawRow<'_>],
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
    let node = dict(slice.iter().map(|(k, _)| k.node as i32).collect(), &sorted.nodes)?;
    let metric = dict(
        slice.iter().map(|(k, _)| k.metric as i32).collect(),
        &sorted.metrics,
    )?;
    let relay_col = dict(vec![0; n], &[relay])?;
    let (mut entries, mut bytes) = (0, 0);
    for (_, i) in slice {
        for l in rows[*i as usize].labels {
            entries += 1;
            bytes += l.key.len().max(l.value.len());
        }
    }
    let mut labels = map_builder_with_capacity(n, entries, bytes);
    for (_, i) in slice {
        for l in rows[*i as usize].labels {
            labels.keys().append_value(&l.key);
            labels.values().append_value(&l.value);
        }
        labels.append(true)?;
    }
    let column = |f: &dyn Fn(&RawRow<'_>) -> i64| -> Vec<i64> {
        slice.iter().map(|(_, i)| f(&rows[*i as usize])).collect()
    };
    let series = Int64Array::from(slice.iter().map(|(k, _)| k.series_id).collect::<Vec<_>>());
    let time = TimestampNanosecondArray::from(slice.iter().map(|(k, _)| k.time).collect::<Vec<_>>())
        .with_timezone("UTC");
    let value = Float64Array::from(
        slice
            .iter()
            .map(|(_, i)| rows[*i as usize].value)
            .collect::<Vec<_>>(),
    );
    let received = TimestampNanosecondArray::from(column(&|r| r.received_at)).with_timezone("UTC");
    let columns: Vec<ArrayRef> = vec![
        node,
        metric,
        Arc::new(labels.finish()),
        Arc::new(series),
        Arc::new(time),
        Arc::new(value),
        Arc::new(received),
        relay_col,
    ];
    RecordBatch::try_new(raw_schema(), columns)
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

/// Encodes points exactly as a relay's Parquet sink does (sorted, split by
/// event hour, one object per hour, snappy), for tools and tests that need
/// raw objects without running a relay. Returns each hour with its row
/// count and object bytes.
pub fn encode_raw_objects(points: &[RawPoint], relay: &str) -> Result<Vec<RawObject>, EncodeError> {
    let rows = points
        .iter()
        .map(|p| RawRow {
            node: &p.node,
            metric: &p.metric,
            labels: &p.labels,
            series_id: series_hash(&p.metric, &p.labels) as i64,
            time: p.time,
            value: p.value,
            received_at: p.received_at,
        })
        .collect();
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
    fn reference_object(mut rows: Vec<RawRow<'_>>, relay: &str) -> Bytes {
        rows.sort_by(|a, b| {
            a.metric
                .cmp(b.metric)
                .then_with(|| a.node.cmp(b.node))
                .then_with(|| a.series_id.cmp(&b.series_id))
                .then_with(|| a.time.cmp(&b.time))
        });
        let batch = build_raw_batch(rows.into_iter(), relay).unwrap();
        let mut buf = Vec::new();
        let mut w =
            ArrowWriter::try_new(&mut buf, batch.schema(), Some(raw_writer_properties(false)))
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        Bytes::from(buf)
    }

    #[test]
    fn objects_are_the_bytes_the_row_by_row_encoder_wrote() {
        // Distinct keys (so the order is total), names that sort otherwise
        // than they first appear, equal names in distinct memory, series
        // with no labels, and rows in no order.
        let hour = 3_600_000_000_000i64 * 490_000;
        let nodes: Vec<String> = ["n-b", "n-a", "n-c", "n-a", "m"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let metrics: Vec<String> = ["zeta", "alpha", "mid", "alpha"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
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
        let mut rows = Vec::new();
        let mut x = 17u64;
        for i in 0..5000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let node = &nodes[(x >> 33) as usize % nodes.len()];
            let metric = &metrics[(x >> 40) as usize % metrics.len()];
            let l = (x >> 20) as usize % labels.len();
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
        let out = encode_flush(rows.clone(), "relay-7", false, None).unwrap();
        assert_eq!(out.hours.len(), 1);
        assert_eq!(out.hours[0].1, rows.len());
        assert!(
            out.hours[0].2 == reference_object(rows, "relay-7"),
            "the object differs from the row-by-row encoder's"
        );
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
