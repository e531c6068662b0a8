//! Encodes one flush's rows into Parquet objects, one per event hour and
//! one for the late hours, with the shared raw-format encoder
//! (`horizon_shared::raw`).

use std::sync::{Arc, Mutex};

use horizon_shared::layout::Hour;
use horizon_shared::raw::{FlushObjects, LabelSets, RawRow, RowSets, encode_flush_sets, lock_sets};

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
/// The rows' label sets are coded in `sets` (once per series and
/// generation: see `horizon_shared::raw::LabelSets`), which is locked
/// while they are. CPU-bound: run it off the async threads.
pub fn encode_flush(
    rows: Vec<Row>,
    sets: &Mutex<LabelSets>,
    relay: &str,
    zstd: bool,
    late_before: Hour,
) -> Result<FlushObjects, String> {
    let mut of_row = Vec::with_capacity(rows.len());
    let (raw, generation) = {
        let mut coder = lock_sets(sets);
        coder.renew_if_full();
        let raw = rows
            .iter()
            .map(|r| {
                of_row.push(coder.set_of(&r.series.label_slot, &r.series.labels));
                RawRow {
                    node: &r.node,
                    metric: &r.series.metric,
                    labels: &r.series.labels,
                    // The column stores the hash as i64.
                    series_id: r.series.series_hash as i64,
                    time: r.time,
                    value: r.value,
                    received_at: r.received_at,
                }
            })
            .collect();
        (raw, coder.generation())
    };
    let sets = RowSets {
        sets,
        generation,
        of_row,
    };
    encode_flush_sets(raw, Some(sets), relay, zstd, Some(late_before)).map_err(|e| e.to_string())
}
