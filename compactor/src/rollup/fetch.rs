//! The committed samples of some series-minutes, read by parts: each
//! committed file's footer, then the key, time, value and type columns of
//! only the row groups whose statistics could hold one of the minutes.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, RecordBatch};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::file::metadata::RowGroupMetaData;

use super::rows::dict_str;
use super::series::MINUTE_NS;
use crate::commit::FileEntry;
use crate::error::UnitError;
use crate::remote::{Remote, bytes_range, int_range};
use horizon_shared::proto::MetricType;

/// Columns read.
const COLUMNS: [&str; 6] = [
    "metric",
    "node",
    "series_id",
    "time",
    "value",
    "metric_type",
];

/// A series-minute to fetch: metric, node, series_id, minute start.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wanted {
    /// Metric.
    pub metric: String,
    /// Node.
    pub node: String,
    /// Series identity.
    pub series_id: i64,
    /// Minute start, Unix ns.
    pub minute: i64,
}

/// Samples found per wanted series-minute (unsorted).
pub type Found = HashMap<Wanted, Vec<(i64, f64, MetricType)>>;

fn may_hold(rg: &RowGroupMetaData, wanted: &[Wanted]) -> bool {
    let (Some(m), Some(n), Some(s), Some(t)) = (
        bytes_range(rg, "metric"),
        bytes_range(rg, "node"),
        int_range(rg, "series_id"),
        int_range(rg, "time"),
    ) else {
        return true;
    };
    wanted.iter().any(|w| {
        (m.0.as_slice()..=m.1.as_slice()).contains(&w.metric.as_bytes())
            && (n.0.as_slice()..=n.1.as_slice()).contains(&w.node.as_bytes())
            && (s.0..=s.1).contains(&w.series_id)
            && t.0 < w.minute + MINUTE_NS
            && t.1 >= w.minute
    })
}

/// Reads the samples of the `wanted` series-minutes from the committed
/// `files`. Returns them and the bytes fetched.
pub async fn fetch(
    store: &Arc<dyn ObjectStore>,
    files: &[FileEntry],
    wanted: &[Wanted],
) -> Result<(Found, u64), UnitError> {
    let mut found = Found::new();
    let mut bytes = 0;
    if wanted.is_empty() {
        return Ok((found, 0));
    }
    let mut by_series: HashMap<i64, Vec<&Wanted>> = HashMap::new();
    for w in wanted {
        by_series.entry(w.series_id).or_default().push(w);
    }
    for f in files {
        let key = Path::from(f.key.as_str());
        let remote = Remote::open(store, &key, f.bytes).await?;
        let groups: Vec<usize> = (0..remote.metadata.num_row_groups())
            .filter(|&g| may_hold(remote.metadata.row_group(g), wanted))
            .collect();
        let (batches, read) = remote.read(store, groups, &COLUMNS).await?;
        bytes += read;
        for b in &batches {
            collect(b, &by_series, &mut found);
        }
    }
    Ok((found, bytes))
}

fn collect(batch: &RecordBatch, by_series: &HashMap<i64, Vec<&Wanted>>, found: &mut Found) {
    let (Some(metric), Some(node), Some(series), Some(time), Some(value)) = (
        batch.column_by_name("metric"),
        batch.column_by_name("node"),
        batch.column_by_name("series_id"),
        batch.column_by_name("time"),
        batch.column_by_name("value"),
    ) else {
        return;
    };
    let kind = batch.column_by_name(horizon_shared::raw::METRIC_TYPE_COLUMN);
    let series = series.as_primitive::<Int64Type>().values();
    let time = time.as_primitive::<TimestampNanosecondType>().values();
    let value = value.as_primitive::<Float64Type>().values();
    for i in 0..batch.num_rows() {
        let Some(ws) = by_series.get(&series[i]) else {
            continue;
        };
        let minute = super::series::minute_of(time[i]);
        for w in ws {
            if w.minute == minute && w.node == dict_str(node, i) && w.metric == dict_str(metric, i)
            {
                let ty = kind
                    .filter(|k| !k.is_null(i))
                    .map_or(MetricType::Unspecified, |k| {
                        super::kind::parse(dict_str(k, i))
                    });
                found
                    .entry((*w).clone())
                    .or_default()
                    .push((time[i], value[i], ty));
            }
        }
    }
}
