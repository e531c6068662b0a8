//! The Arrow schema of the raw micro-batches (version 1), shared by the
//! relay that writes them and the compactor that reads them. docs/data.md
//! describes every column.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    Float64Builder, Int64Builder, MapBuilder, MapFieldNames, StringBuilder,
    StringDictionaryBuilder, TimestampNanosecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::proto::Label;

/// Version written in the Parquet key-value metadata under `horizon.schema`.
pub const SCHEMA_VERSION: &str = "1";

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

/// The schema: `node`, `metric`, `labels`, `series_id`, `time`, `value`,
/// `received_at`, `relay`.
pub fn raw_schema() -> SchemaRef {
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
        };
        let b = build_raw_batch([row, row].into_iter(), "relay-1").unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.schema(), raw_schema());
    }
}
