//! The Arrow arrays of an object's rows, built from the sort's codes: the
//! record batch the Arrow writer writes ([`build_sorted_batch`]), the
//! numeric columns, which the coded writer writes too ([`numeric_columns`]),
//! and the metric types' codes ([`metric_type_codes`]).

use std::sync::Arc;

use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow_schema::ArrowError;

use super::rows::SortedRows;
use super::schema::{METRIC_TYPES, map_builder_with_capacity, metric_type_index, raw_schema};
use super::sort::SortKey;

/// The record batch of the rows `slice` names, in its order: the same
/// batch as [`build_raw_batch`] of those rows, built column by column from
/// the sort's codes (node, metric and relay as dictionary keys over the
/// flush's distinct names, the metric type over the column's five values;
/// the writer keeps only the ones used).
///
/// [`build_raw_batch`]: super::build_raw_batch
pub(super) fn build_sorted_batch(
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
    let types = dict(
        metric_type_codes(sorted, slice)
            .into_iter()
            .map(|c| c as i32)
            .collect(),
        &METRIC_TYPES,
    )?;
    let columns: Vec<ArrayRef> = vec![
        node,
        metric,
        Arc::new(labels.finish()),
        series,
        time,
        value,
        received,
        relay_col,
        types,
    ];
    RecordBatch::try_new(raw_schema(), columns)
}

/// The `metric_type` of the rows `slice` names, in its order, as indices
/// into [`METRIC_TYPES`].
pub(super) fn metric_type_codes(sorted: &SortedRows<'_>, slice: &[(SortKey, u32)]) -> Vec<u32> {
    slice
        .iter()
        .map(|(_, i)| metric_type_index(sorted.rest[*i as usize].metric_type) as u32)
        .collect()
}

/// The numeric columns of the rows `slice` names, in its order and the
/// schema's: `series_id`, `time`, `value`, `received_at`.
pub(super) fn numeric_columns(sorted: &SortedRows<'_>, slice: &[(SortKey, u32)]) -> [ArrayRef; 4] {
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
