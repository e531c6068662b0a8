//! The Arrow schema of the raw micro-batches (version 2), shared by the
//! relay that writes them and the compactor that reads them, and the
//! version-1 schema it grew from (no `metric_type`), which readers still
//! take ([`upgrade_batch`]). docs/data.md describes every column.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    Float64Builder, Int64Builder, MapBuilder, MapFieldNames, StringBuilder,
    StringDictionaryBuilder, TimestampNanosecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::proto::{Label, MetricType};

/// Version written in the Parquet key-value metadata under `horizon.schema`.
/// Version 1 had no `metric_type` column.
pub const SCHEMA_VERSION: &str = "2";

/// The name of the metric type's column, the schema's last.
pub const METRIC_TYPE_COLUMN: &str = "metric_type";

/// Every value of the `metric_type` column, in the order of the protocol's
/// `MetricType` (`unknown` for its unspecified 0 last).
pub const METRIC_TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "unknown"];

/// The `metric_type` of a row whose series said none, and of every row of
/// a version-1 object.
pub const UNKNOWN_METRIC_TYPE: &str = "unknown";

/// The `metric_type` column's value for a type.
pub fn metric_type_name(t: MetricType) -> &'static str {
    METRIC_TYPES[metric_type_index(t)]
}

/// The index in [`METRIC_TYPES`] of a type's value.
pub(crate) fn metric_type_index(t: MetricType) -> usize {
    match t {
        MetricType::Counter => 0,
        MetricType::Gauge => 1,
        MetricType::Histogram => 2,
        MetricType::Summary => 3,
        MetricType::Unspecified => 4,
    }
}

/// The type a `metric_type` value names (`None`: not one of [`METRIC_TYPES`]).
pub fn metric_type_of_name(name: &str) -> Option<MetricType> {
    Some(match name {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "unknown" => MetricType::Unspecified,
        _ => return None,
    })
}

fn map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    map_builder_with_capacity(0, 0, 0)
}

/// A builder of the `labels` column with room for `rows` maps of `labels`
/// entries in all, holding `bytes` bytes of keys and of values each.
pub(crate) fn map_builder_with_capacity(
    rows: usize,
    labels: usize,
    bytes: usize,
) -> MapBuilder<StringBuilder, StringBuilder> {
    let names = MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    };
    MapBuilder::with_capacity(
        Some(names),
        StringBuilder::with_capacity(labels, bytes),
        StringBuilder::with_capacity(labels, bytes),
        rows,
    )
}

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The schema (version 2): `node`, `metric`, `labels`, `series_id`,
/// `time`, `value`, `received_at`, `relay`, `metric_type`.
pub fn raw_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields: Vec<Field> = raw_schema_v1()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new(METRIC_TYPE_COLUMN, dict(), false));
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// The version-1 schema: [`raw_schema`] without its last column,
/// `metric_type`.
pub fn raw_schema_v1() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
            let labels = map_builder().finish().data_type().clone();
            Arc::new(Schema::new(vec![
                Field::new("node", dict(), false),
                Field::new("metric", dict(), false),
                Field::new("labels", labels, false),
                Field::new("series_id", DataType::Int64, false),
                Field::new("time", ts.clone(), false),
                Field::new("value", DataType::Float64, false),
                Field::new("received_at", ts, false),
                Field::new("relay", dict(), false),
            ]))
        })
        .clone()
}

/// A batch of either version as a batch of [`raw_schema`]: a version-1
/// batch (its columns those of [`raw_schema_v1`]) gains a `metric_type` of
/// `unknown` on every row; any other batch is returned as it is (the
/// reader checks it against the schema).
pub fn upgrade_batch(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    if batch.num_columns() != raw_schema_v1().fields().len() {
        return Ok(batch);
    }
    let mut columns = batch.columns().to_vec();
    columns.push(unknown_types(batch.num_rows())?);
    RecordBatch::try_new(raw_schema(), columns)
}

/// A `metric_type` column of `rows` rows, all `unknown`.
fn unknown_types(rows: usize) -> Result<ArrayRef, ArrowError> {
    let values: ArrayRef = Arc::new(StringArray::from(vec![UNKNOWN_METRIC_TYPE]));
    Ok(Arc::new(DictionaryArray::try_new(
        Int32Array::from(vec![0; rows]),
        values,
    )?))
}

/// One row to write.
#[derive(Debug, Clone, Copy)]
pub struct RawRow<'a> {
    /// Node identity (from the client certificate).
    pub node: &'a str,
    /// Metric name.
    pub metric: &'a str,
    /// Labels in canonical order.
    pub labels: &'a [Label],
    /// Series identity: `model::series_hash` as a signed 64-bit integer.
    pub series_id: i64,
    /// Event time, Unix ns.
    pub time: i64,
    /// Value.
    pub value: f64,
    /// When the relay received the point, Unix ns.
    pub received_at: i64,
    /// The series' metric type (unspecified: `unknown`).
    pub metric_type: MetricType,
}

/// Builds a record batch of the raw schema from rows, in the given order.
pub fn build_raw_batch<'a>(
    rows: impl ExactSizeIterator<Item = RawRow<'a>>,
    relay: &str,
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut node = StringDictionaryBuilder::<Int32Type>::new();
    let mut metric = StringDictionaryBuilder::<Int32Type>::new();
    let mut labels = map_builder();
    let mut series = Int64Builder::with_capacity(n);
    let mut time = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut value = Float64Builder::with_capacity(n);
    let mut received = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut relay_col = StringDictionaryBuilder::<Int32Type>::new();
    let mut types = StringDictionaryBuilder::<Int32Type>::new();
    for r in rows {
        node.append_value(r.node);
        metric.append_value(r.metric);
        for l in r.labels {
            labels.keys().append_value(&l.key);
            labels.values().append_value(&l.value);
        }
        labels.append(true)?;
        series.append_value(r.series_id);
        time.append_value(r.time);
        value.append_value(r.value);
        received.append_value(r.received_at);
        relay_col.append_value(relay);
        types.append_value(metric_type_name(r.metric_type));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(node.finish()),
        Arc::new(metric.finish()),
        Arc::new(labels.finish()),
        Arc::new(series.finish()),
        Arc::new(time.finish()),
        Arc::new(value.finish()),
        Arc::new(received.finish()),
        Arc::new(relay_col.finish()),
        Arc::new(types.finish()),
    ];
    RecordBatch::try_new(raw_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_batch_of_the_schema() {
        let labels = [Label {
            key: "gpu".into(),
            value: "0".into(),
        }];
        let row = RawRow {
            node: "n",
            metric: "m",
            labels: &labels,
            series_id: -5,
            time: 1,
            value: 2.5,
            received_at: 3,
            metric_type: MetricType::Counter,
        };
        let b = build_raw_batch([row, row].into_iter(), "relay-1").unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.schema(), raw_schema());
        assert_eq!(types_of(&b), ["counter", "counter"]);
    }

    fn types_of(b: &RecordBatch) -> Vec<String> {
        use arrow_array::cast::AsArray;
        let col = b.column(b.schema().index_of(METRIC_TYPE_COLUMN).unwrap());
        let d = col.as_dictionary::<Int32Type>();
        let v = d.values().as_string::<i32>();
        d.keys()
            .values()
            .iter()
            .map(|&k| v.value(k as usize).to_owned())
            .collect()
    }

    #[test]
    fn the_metric_type_is_the_last_column_and_names_every_type() {
        let schema = raw_schema();
        let last = schema.fields().last().unwrap();
        assert_eq!(last.name(), METRIC_TYPE_COLUMN);
        assert!(!last.is_nullable());
        assert_eq!(
            schema.fields()[..schema.fields().len() - 1],
            raw_schema_v1().fields()[..]
        );
        for t in [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::Summary,
            MetricType::Unspecified,
        ] {
            let name = metric_type_name(t);
            assert!(METRIC_TYPES.contains(&name));
            assert_eq!(metric_type_of_name(name), Some(t));
        }
        assert_eq!(metric_type_name(MetricType::Unspecified), "unknown");
        assert_eq!(metric_type_of_name("untyped"), None);
    }

    #[test]
    fn a_version_1_batch_reads_as_version_2_with_unknown_types() {
        let row = |metric_type| RawRow {
            node: "n",
            metric: "m",
            labels: &[],
            series_id: 1,
            time: 2,
            value: 3.0,
            received_at: 4,
            metric_type,
        };
        let v2 = build_raw_batch(
            [row(MetricType::Gauge), row(MetricType::Counter)].into_iter(),
            "r",
        )
        .unwrap();
        // The same rows as a version-1 writer made them.
        let v1 = v2.project(&[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!(v1.schema().fields(), raw_schema_v1().fields());
        let up = upgrade_batch(v1).unwrap();
        assert_eq!(up.schema(), raw_schema());
        assert_eq!(types_of(&up), ["unknown", "unknown"]);
        for c in 0..8 {
            assert_eq!(up.column(c), v2.column(c));
        }
        // A version-2 batch is kept as it is.
        let same = upgrade_batch(v2.clone()).unwrap();
        assert_eq!(types_of(&same), ["gauge", "counter"]);
        assert_eq!(same, v2);
    }
}
