//! Rollup rows: one series over one interval. Their Arrow schema (docs/data.md,
//! "Rollups"), the record batches written from them, and rows read back.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, MapBuilder, MapFieldNames, StringBuilder,
    StringDictionaryBuilder, TimestampNanosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef, MapArray, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::basic::Compression;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::agg::Agg;
use super::kind::Kind;
use horizon_shared::proto::MetricType;

/// A series: what a rollup row is keyed by besides its interval.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Metric name (the first sort column, as in the raw schema).
    pub metric: String,
    /// Node identity.
    pub node: String,
    /// Series identity (docs/data.md).
    pub series_id: i64,
    /// Labels, keys ascending.
    pub labels: Vec<(String, String)>,
}

impl SeriesKey {
    /// The sort key: metric, node, series_id (labels follow from them).
    pub fn sort_key(&self) -> (&str, &str, i64) {
        (&self.metric, &self.node, self.series_id)
    }
}

/// One rollup row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The series.
    pub key: Arc<SeriesKey>,
    /// Its type in the interval.
    pub metric_type: MetricType,
    /// Interval start, Unix ns.
    pub start: i64,
    /// The aggregates.
    pub agg: Agg,
}

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn labels_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    let names = MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    };
    MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
}

/// The rollup schema (the same for every level).
pub fn rollup_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
            let labels = labels_builder().finish().data_type().clone();
            let f64f = |n: &str| Field::new(n, DataType::Float64, false);
            Arc::new(Schema::new(vec![
                Field::new("node", dict(), false),
                Field::new("metric", dict(), false),
                Field::new("labels", labels, false),
                Field::new("series_id", DataType::Int64, false),
                Field::new("metric_type", dict(), false),
                Field::new("interval_start", ts.clone(), false),
                Field::new("count", DataType::Int64, false),
                f64f("sum"),
                f64f("min"),
                f64f("max"),
                f64f("first"),
                Field::new("first_time", ts.clone(), false),
                f64f("last"),
                Field::new("last_time", ts, false),
                Field::new("increase", DataType::Float64, true),
                Field::new("increase_assumed", DataType::Boolean, false),
            ]))
        })
        .clone()
}

/// Writer properties of rollup files: snappy, page statistics, the sort
/// order (`metric`, `node`, `series_id`, `interval_start`) declared, and the
/// level in the key-value metadata.
pub fn rollup_properties(level: &str, row_group_rows: usize) -> WriterProperties {
    let sorting = [1, 0, 3, 5]
        .into_iter()
        .map(|i| SortingColumn {
            column_idx: i,
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
            KeyValue::new("horizon.rollup".into(), "1".to_owned()),
            KeyValue::new("horizon.rollup.interval".into(), level.to_owned()),
        ]))
        .build()
}

/// A record batch of the rollup schema holding `rows` in order.
pub fn to_batch(rows: &[Row]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut node = StringDictionaryBuilder::<Int32Type>::new();
    let mut metric = StringDictionaryBuilder::<Int32Type>::new();
    let mut labels = labels_builder();
    let mut series = Int64Builder::with_capacity(n);
    let mut kind = StringDictionaryBuilder::<Int32Type>::new();
    let ts = || TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut start, mut first_t, mut last_t) = (ts(), ts(), ts());
    let mut count = Int64Builder::with_capacity(n);
    let f = || Float64Builder::with_capacity(n);
    let (mut sum, mut min, mut max, mut first, mut last, mut inc) = (f(), f(), f(), f(), f(), f());
    let mut assumed = BooleanBuilder::with_capacity(n);
    for r in rows {
        node.append_value(&r.key.node);
        metric.append_value(&r.key.metric);
        for (k, v) in &r.key.labels {
            labels.keys().append_value(k);
            labels.values().append_value(v);
        }
        labels.append(true)?;
        series.append_value(r.key.series_id);
        kind.append_value(r.metric_type.as_str());
        start.append_value(r.start);
        count.append_value(i64::try_from(r.agg.count).unwrap_or(i64::MAX));
        sum.append_value(r.agg.sum);
        min.append_value(r.agg.min);
        max.append_value(r.agg.max);
        first.append_value(r.agg.first.1);
        first_t.append_value(r.agg.first.0);
        last.append_value(r.agg.last.1);
        last_t.append_value(r.agg.last.0);
        inc.append_option(
            r.metric_type
                .cumulative(&r.key.metric)
                .then_some(r.agg.increase),
        );
        assumed.append_value(r.metric_type == MetricType::Unspecified);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(node.finish()),
        Arc::new(metric.finish()),
        Arc::new(labels.finish()),
        Arc::new(series.finish()),
        Arc::new(kind.finish()),
        Arc::new(start.finish()),
        Arc::new(count.finish()),
        Arc::new(sum.finish()),
        Arc::new(min.finish()),
        Arc::new(max.finish()),
        Arc::new(first.finish()),
        Arc::new(first_t.finish()),
        Arc::new(last.finish()),
        Arc::new(last_t.finish()),
        Arc::new(inc.finish()),
        Arc::new(assumed.finish()),
    ];
    RecordBatch::try_new(rollup_schema(), columns)
}

/// A dictionary-encoded string column's value at a row.
pub fn dict_str(col: &ArrayRef, i: usize) -> &str {
    let d = col.as_dictionary::<Int32Type>();
    let values = d.values().as_string::<i32>();
    values.value(d.keys().value(i) as usize)
}

/// A map column's entries at a row.
pub fn labels_at(col: &MapArray, i: usize) -> Vec<(String, String)> {
    let entries = col.value(i);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|j| (keys.value(j).to_owned(), values.value(j).to_owned()))
        .collect()
}

/// Reads rollup rows back from a batch of the rollup schema.
#[derive(Debug)]
pub struct RowReader<'a> {
    batch: &'a RecordBatch,
}

impl<'a> RowReader<'a> {
    /// A reader over `batch` (of [`rollup_schema`]).
    pub fn new(batch: &'a RecordBatch) -> Self {
        Self { batch }
    }

    fn col(&self, i: usize) -> &ArrayRef {
        self.batch.column(i)
    }

    /// Row `i`'s sort key.
    pub fn sort_key(&self, i: usize) -> (&str, &str, i64) {
        (
            dict_str(self.col(1), i),
            dict_str(self.col(0), i),
            self.col(3).as_primitive::<Int64Type>().value(i),
        )
    }

    /// Row `i`'s series (labels included).
    pub fn series(&self, i: usize) -> SeriesKey {
        let (metric, node, series_id) = self.sort_key(i);
        SeriesKey {
            metric: metric.to_owned(),
            node: node.to_owned(),
            series_id,
            labels: labels_at(self.col(2).as_map(), i),
        }
    }

    /// Row `i`, its series given.
    pub fn row(&self, i: usize, key: &Arc<SeriesKey>) -> Row {
        let ts = |c: usize| {
            self.col(c)
                .as_primitive::<TimestampNanosecondType>()
                .value(i)
        };
        let f = |c: usize| self.col(c).as_primitive::<Float64Type>().value(i);
        let increase = self.col(14).as_primitive::<Float64Type>();
        Row {
            key: Arc::clone(key),
            metric_type: super::kind::parse(dict_str(self.col(4), i)),
            start: ts(5),
            agg: Agg {
                count: u64::try_from(self.col(6).as_primitive::<Int64Type>().value(i))
                    .unwrap_or_default(),
                sum: f(7),
                min: f(8),
                max: f(9),
                first: (ts(11), f(10)),
                last: (ts(13), f(12)),
                // Written only for cumulative series; a gauge's row is never
                // the predecessor an increase is rebuilt from.
                increase: if increase.is_null(i) {
                    0.0
                } else {
                    increase.value(i)
                },
            },
        }
    }
}
