//! Encodes one flush's rows into Parquet objects, one per event hour and
//! one for the late hours, with the shared raw-format encoder
//! (`horizon_shared::raw`).

use std::sync::{Arc, Mutex};

use horizon_shared::layout::Hour;
use horizon_shared::raw::{FlushObjects, LabelSets, RawRow, RowSets, encode_flush_sets, lock_sets};

use crate::ingest::AcceptedPoint;

/// The points of one submission in a flush's rows: its node, when the
/// relay received it, and where its points end.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) node: Arc<str>,
    pub(crate) received_at: i64,
    pub(crate) end: usize,
}

/// Sorts `rows` by metric, node, series and time (the order readers prune
/// and merge by), splits them by event hour, and encodes one Parquet file
/// per hour from `late_before` on and one late file for the older hours.
/// The rows' label sets are coded in `sets` (once per series and
/// generation: see `horizon_shared::raw::LabelSets`), which is locked
/// while they are. CPU-bound: run it off the async threads.
pub fn encode_flush(
    rows: Vec<AcceptedPoint>,
    runs: &[Run],
    sets: &Mutex<LabelSets>,
    relay: &str,
    zstd: bool,
    late_before: Hour,
) -> Result<FlushObjects, String> {
    let mut of_row = Vec::with_capacity(rows.len());
    let (raw, generation) = {
        let mut coder = lock_sets(sets);
        coder.renew_if_full();
        let mut raw = Vec::with_capacity(rows.len());
        let mut start = 0;
        for run in runs {
            let points = rows.get(start..run.end).ok_or_else(|| {
                format!("a flush's run ends at row {} of {}", run.end, rows.len())
            })?;
            for p in points {
                of_row.push(coder.set_of(&p.series.label_slot, &p.series.labels));
                raw.push(RawRow {
                    node: &run.node,
                    metric: &p.series.metric,
                    labels: &p.series.labels,
                    // The column stores the hash as i64.
                    series_id: p.series.series_hash as i64,
                    time: p.time_unix_nano,
                    value: p.value,
                    received_at: run.received_at,
                    metric_type: p.series.metric_type,
                });
            }
            start = run.end;
        }
        if start != rows.len() {
            return Err(format!(
                "a flush's runs end at row {start} of {}",
                rows.len()
            ));
        }
        (raw, coder.generation())
    };
    let sets = RowSets {
        sets,
        generation,
        of_row,
    };
    encode_flush_sets(raw, Some(sets), relay, zstd, Some(late_before)).map_err(|e| e.to_string())
}
