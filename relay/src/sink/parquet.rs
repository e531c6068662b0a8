//! Encodes one flush's rows into Parquet objects, one per event hour and
//! one for the late hours, with the shared raw-format encoder
//! (`horizon_shared::raw`).

use std::sync::Arc;

use horizon_shared::layout::Hour;
use horizon_shared::raw::{FlushObjects, RawRow, encode_flush as encode_rows};

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
/// per hour from `late_before` on and one late file for the older hours.
/// CPU-bound: run it off the async threads.
pub fn encode_flush(
    rows: Vec<Row>,
    relay: &str,
    zstd: bool,
    late_before: Hour,
) -> Result<FlushObjects, String> {
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
    encode_rows(raw, relay, zstd, Some(late_before)).map_err(|e| e.to_string())
}
