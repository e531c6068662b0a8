//! Encodes one flush's rows into Parquet objects, one per event hour, with
//! the shared raw-format encoder (`horizon_shared::raw`).

use std::sync::Arc;

use bytes::Bytes;
use horizon_shared::layout::Hour;
use horizon_shared::raw::{RawRow, encode_by_hour as encode_rows};

use crate::ingest::SeriesEntry;

/// One accepted point on its way to Parquet.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) node: Arc<str>,
    pub(crate) series: Arc<SeriesEntry>,
    pub(crate) time: i64,
    pub(crate) value: f64,
    pub(crate) received_at: i64,
}

/// Sorts `rows` by metric, node, series and time (the order readers prune
/// and merge by), splits them by event hour, and encodes one Parquet file
/// per hour. CPU-bound: run it off the async threads.
pub fn encode_by_hour(
    rows: Vec<Row>,
    relay: &str,
    zstd: bool,
) -> Result<Vec<(Hour, usize, Bytes)>, String> {
    let raw = rows
        .iter()
        .map(|r| RawRow {
            node: &r.node,
            metric: &r.series.metric,
            labels: &r.series.labels,
            // The column stores the hash as i64.
            series_id: r.series.series_hash as i64,
            time: r.time,
            value: r.value,
            received_at: r.received_at,
        })
        .collect();
    encode_rows(raw, relay, zstd).map_err(|e| e.to_string())
}
