//! Encodes one hour's rows into a Parquet object.

use std::sync::Arc;

use bytes::Bytes;
use horizon_shared::layout::Hour;
use horizon_shared::schema::{RawRow, SCHEMA_VERSION, build_raw_batch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::WriterProperties;

use super::Row;

/// Sorts `rows` by metric, node, series and time (the order readers prune
/// and merge by), splits them by event hour, and encodes one Parquet file
/// per hour. CPU-bound: run it off the async threads.
pub fn encode_by_hour(
    mut rows: Vec<Row>,
    relay: &str,
    zstd: bool,
) -> Result<Vec<(Hour, usize, Bytes)>, String> {
    rows.sort_unstable_by(|a, b| {
        Hour::of_nanos(a.time)
            .cmp(&Hour::of_nanos(b.time))
            .then_with(|| a.series.metric.cmp(&b.series.metric))
            .then_with(|| a.node.cmp(&b.node))
            // The column stores the hash as i64: sort by that, not by the u64.
            .then_with(|| (a.series.series_hash as i64).cmp(&(b.series.series_hash as i64)))
            .then_with(|| a.time.cmp(&b.time))
    });
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(if zstd {
                Compression::ZSTD(ZstdLevel::default())
            } else {
                Compression::SNAPPY
            })
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "horizon.schema".into(),
                SCHEMA_VERSION.to_owned(),
            )]))
            .set_sorting_columns(Some(vec![
                SortingColumn {
                    column_idx: 1,
                    descending: false,
                    nulls_first: false,
                },
                SortingColumn {
                    column_idx: 0,
                    descending: false,
                    nulls_first: false,
                },
                SortingColumn {
                    column_idx: 3,
                    descending: false,
                    nulls_first: false,
                },
                SortingColumn {
                    column_idx: 4,
                    descending: false,
                    nulls_first: false,
                },
            ]))
            .build(),
    );
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let hour = Hour::of_nanos(rows[start].time);
        let end = start
            + rows[start..]
                .iter()
                .take_while(|r| Hour::of_nanos(r.time) == hour)
                .count();
        let slice = &rows[start..end];
        let batch = build_raw_batch(
            slice.iter().map(|r| RawRow {
                node: &r.node,
                metric: &r.series.metric,
                labels: &r.series.labels,
                series_id: r.series.series_hash as i64,
                time: r.time,
                value: r.value,
                received_at: r.received_at,
            }),
            relay,
        )
        .map_err(|e| format!("building the record batch: {e}"))?;
        let mut buf = Vec::with_capacity(slice.len() * 8);
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some((*props).clone()))
            .map_err(|e| format!("starting the Parquet writer: {e}"))?;
        w.write(&batch)
            .map_err(|e| format!("writing Parquet: {e}"))?;
        w.close().map_err(|e| format!("finishing Parquet: {e}"))?;
        out.push((hour, slice.len(), Bytes::from(buf)));
        start = end;
    }
    Ok(out)
}
