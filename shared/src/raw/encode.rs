//! The encoder's entry points: a flush's rows to one object per event hour
//! and one late object ([`encode_flush_sets`], and [`encode_flush`] and
//! [`encode_by_hour`] over it), and owned points to objects for tools and
//! tests ([`RawPoint`], [`encode_raw_objects`]).

use bytes::Bytes;

use super::format::{EncodeError, raw_writer_properties};
use super::groups::group_stably;
use super::labels::RowSets;
use super::object::{encode_rows, encode_rows_grouped};
use super::rows::SortedRows;
use super::schema::RawRow;
use crate::layout::Hour;
use crate::model::series_hash;
use crate::proto::{Label, MetricType};

/// One encoded object: its event hour, rows and bytes.
pub type RawObject = (Hour, usize, Bytes);

/// Sorts `rows` by event hour then [`SORT_KEY`], splits them by event hour,
/// and encodes one Parquet object per hour with [`raw_writer_properties`].
/// CPU-bound: run it off the async threads.
///
/// [`SORT_KEY`]: super::SORT_KEY
pub fn encode_by_hour(
    rows: Vec<RawRow<'_>>,
    relay: &str,
    zstd: bool,
) -> Result<Vec<RawObject>, EncodeError> {
    Ok(encode_flush(rows, relay, zstd, None)?.hours)
}

/// One flush's objects: one per event hour from `late_before` on, and one
/// late object for all the older hours' rows.
#[derive(Debug, Default)]
pub struct FlushObjects {
    /// One object per hour.
    pub hours: Vec<RawObject>,
    /// The late object (rows of every hour before `late_before`, sorted by
    /// hour, then [`SORT_KEY`]) and its row count.
    ///
    /// [`SORT_KEY`]: super::SORT_KEY
    pub late: Option<(usize, Bytes)>,
}

/// Like [`encode_by_hour`], but the rows of hours before `late_before` (if
/// given) go to one late object, so a flush makes a bounded number of
/// objects whatever hours its points span.
pub fn encode_flush(
    rows: Vec<RawRow<'_>>,
    relay: &str,
    zstd: bool,
    late_before: Option<Hour>,
) -> Result<FlushObjects, EncodeError> {
    encode_flush_sets(rows, None, relay, zstd, late_before)
}

/// [`encode_flush`], with the rows' label sets coded in a [`LabelSets`]
/// (one set number per row): an hour's object cut into node groups then
/// takes its labels' codes from the sets, without reading the labels'
/// text, unless the sets have started a new generation since. The late
/// object and objects of one group (under twice [`MIN_GROUP_ROWS`] rows)
/// are written by the Arrow writer from the text.
///
/// [`LabelSets`]: super::LabelSets
/// [`MIN_GROUP_ROWS`]: super::MIN_GROUP_ROWS
pub fn encode_flush_sets<'a>(
    rows: Vec<RawRow<'a>>,
    sets: Option<RowSets<'a>>,
    relay: &str,
    zstd: bool,
    late_before: Option<Hour>,
) -> Result<FlushObjects, EncodeError> {
    if let Some(s) = &sets {
        assert_eq!(s.of_row.len(), rows.len(), "one label set per row");
    }
    let mut sorted = SortedRows::new(&rows, sets.as_ref());
    // Everything the encoder reads is in `sorted` now.
    drop(rows);
    let props = raw_writer_properties(zstd);
    let mut out = FlushObjects::default();
    let mut order = std::mem::take(&mut sorted.order);
    // Rows are sorted by hour first: the late ones are a prefix.
    let mut start = late_before.map_or(0, |h| order.partition_point(|(k, _)| k.hour < h));
    if start > 0 {
        // Sorted by hour before the key: not the declared order of an hour's object.
        let late_props = props
            .clone()
            .into_builder()
            .set_sorting_columns(None)
            .build();
        let bytes = encode_rows(&sorted, &order[..start], relay, &late_props)?;
        out.late = Some((start, bytes));
    }
    while start < order.len() {
        let hour = order[start].0.hour;
        let end = start + order[start..].partition_point(|(k, _)| k.hour == hour);
        let slice = &mut order[start..end];
        let groups = group_stably(slice, |(k, _)| sorted.node_buckets[k.node as usize]);
        out.hours.push((
            hour,
            slice.len(),
            encode_rows_grouped(&sorted, slice, relay, &props, &groups)?,
        ));
        start = end;
    }
    Ok(out)
}

/// A point for [`encode_raw_objects`].
#[derive(Debug, Clone)]
pub struct RawPoint {
    /// Node identity.
    pub node: String,
    /// Metric name.
    pub metric: String,
    /// Labels, in canonical order (sorted by key).
    pub labels: Vec<Label>,
    /// Event time, Unix ns.
    pub time: i64,
    /// Value.
    pub value: f64,
    /// When a relay received the point, Unix ns.
    pub received_at: i64,
    /// The series' metric type (unspecified: `unknown`).
    pub metric_type: MetricType,
}

impl RawPoint {
    /// The row a relay encodes for this point (its series id is the hash of
    /// its metric and labels).
    pub fn row(&self) -> RawRow<'_> {
        RawRow {
            node: &self.node,
            metric: &self.metric,
            labels: &self.labels,
            series_id: series_hash(&self.metric, &self.labels) as i64,
            time: self.time,
            value: self.value,
            received_at: self.received_at,
            metric_type: self.metric_type,
        }
    }
}

/// Encodes points exactly as a relay's Parquet sink does (sorted, split by
/// event hour, one object per hour, snappy), for tools and tests that need
/// raw objects without running a relay. Returns each hour with its row
/// count and object bytes.
pub fn encode_raw_objects(points: &[RawPoint], relay: &str) -> Result<Vec<RawObject>, EncodeError> {
    let rows = points.iter().map(RawPoint::row).collect();
    encode_by_hour(rows, relay, false)
}
