//! The k-way merge of rollup sources, each in sort order (metric, node,
//! series_id, interval start), into one stream in that order: a day's
//! 1-hour files made from its unit hours, so that each series' 24 rows lie
//! together and each metric's rows make row groups of their own
//! (`files.rs`). Holds one batch per source.

use arrow_array::RecordBatch;
use arrow_row::{RowConverter, Rows, SortField};
use arrow_select::interleave::interleave_record_batch;

use super::rows::rollup_schema;
use crate::merge::{BATCH_ROWS, MergeError, Source, sift_down};

/// The sort columns of the rollup schema: metric, node, series_id,
/// interval_start.
const SORT_COLUMNS: [usize; 4] = [1, 0, 3, 5];

struct Cursor {
    source: Source,
    batch: RecordBatch,
    rows: Rows,
    pos: usize,
}

/// The source's next non-empty batch, as the rollup schema, with its sort
/// keys in row format.
fn next(
    source: &mut Source,
    conv: &RowConverter,
) -> Result<Option<(RecordBatch, Rows)>, MergeError> {
    while let Some(b) = source.next().transpose()? {
        if b.num_rows() > 0 {
            let b = RecordBatch::try_new(rollup_schema(), b.columns().to_vec())?;
            let cols: Vec<_> = SORT_COLUMNS.iter().map(|&i| b.column(i).clone()).collect();
            let rows = conv.convert_columns(&cols)?;
            return Ok(Some((b, rows)));
        }
    }
    Ok(None)
}

/// Merges `sources` into one stream in sort order, handed to `emit` in
/// batches of at most `BATCH_ROWS` rows. Returns the rows merged.
pub(crate) fn merge(
    sources: Vec<Source>,
    mut emit: impl FnMut(&RecordBatch) -> Result<(), MergeError>,
) -> Result<u64, MergeError> {
    let schema = rollup_schema();
    let conv = RowConverter::new(
        SORT_COLUMNS
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )?;
    let mut cursors = Vec::with_capacity(sources.len());
    for mut source in sources {
        if let Some((batch, rows)) = next(&mut source, &conv)? {
            cursors.push(Cursor {
                source,
                batch,
                rows,
                pos: 0,
            });
        }
    }
    let less = |c: &[Cursor], a: usize, b: usize| c[a].rows.row(c[a].pos) < c[b].rows.row(c[b].pos);
    let mut heap: Vec<usize> = (0..cursors.len()).collect();
    for i in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, i, |a, b| less(&cursors, a, b));
    }
    let mut pending: Vec<(usize, usize)> = Vec::with_capacity(BATCH_ROWS);
    let mut merged = 0u64;
    let flush = |cursors: &[Cursor],
                 pending: &mut Vec<(usize, usize)>,
                 emit: &mut dyn FnMut(&RecordBatch) -> Result<(), MergeError>|
     -> Result<(), MergeError> {
        if !pending.is_empty() {
            let refs: Vec<&RecordBatch> = cursors.iter().map(|c| &c.batch).collect();
            emit(&interleave_record_batch(&refs, pending)?)?;
            pending.clear();
        }
        Ok(())
    };
    while let Some(&top) = heap.first() {
        pending.push((top, cursors[top].pos));
        merged += 1;
        if pending.len() >= BATCH_ROWS {
            flush(&cursors, &mut pending, &mut emit)?;
        }
        cursors[top].pos += 1;
        if cursors[top].pos >= cursors[top].batch.num_rows() {
            // The pending rows may point into this batch: write them first.
            flush(&cursors, &mut pending, &mut emit)?;
            let c = &mut cursors[top];
            if let Some((batch, rows)) = next(&mut c.source, &conv)? {
                (c.batch, c.rows, c.pos) = (batch, rows, 0);
            } else {
                let last = heap.len() - 1;
                heap.swap(0, last);
                heap.pop();
            }
        }
        if !heap.is_empty() {
            sift_down(&mut heap, 0, |a, b| less(&cursors, a, b));
        }
    }
    flush(&cursors, &mut pending, &mut emit)?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampNanosecondType;

    use super::*;
    use crate::rollup::{Agg, Row, RowReader, SeriesKey, to_batch};
    use horizon_shared::proto::MetricType;

    const HOUR: i64 = 3_600_000_000_000;

    /// One hour's rows of `series` (metric, node, id), in sort order.
    fn hour(h: i64, series: &[(&str, &str, i64)]) -> Source {
        let rows: Vec<Row> = series
            .iter()
            .map(|&(metric, node, series_id)| {
                let agg = Agg::start((h * HOUR, h as f64), None);
                Row {
                    key: Arc::new(SeriesKey {
                        metric: metric.to_owned(),
                        node: node.to_owned(),
                        series_id,
                        labels: Vec::new(),
                    }),
                    metric_type: MetricType::Gauge,
                    start: h * HOUR,
                    agg,
                }
            })
            .collect();
        // Two batches per source, so cursors move between batches.
        let (a, b) = rows.split_at(rows.len() / 2);
        let batches = vec![to_batch(a), to_batch(b)];
        Box::new(batches.into_iter())
    }

    #[test]
    fn merges_hours_into_series_order() {
        let s = [
            ("a", "n1", 1),
            ("a", "n2", 2),
            ("b", "n1", 3),
            ("c", "n1", 4),
        ];
        // Hour 1 lacks a series; hour 2 has one the others lack.
        let sources = vec![
            hour(0, &s),
            hour(1, &s[1..]),
            hour(2, &[s[0], ("a", "n3", 9), s[2], s[3]]),
        ];
        let mut got = Vec::new();
        let n = merge(sources, |b| {
            let rd = RowReader::new(b);
            for i in 0..b.num_rows() {
                let (m, node, id) = rd.sort_key(i);
                let start = b
                    .column(5)
                    .as_primitive::<TimestampNanosecondType>()
                    .value(i)
                    / HOUR;
                got.push((m.to_owned(), node.to_owned(), id, start));
            }
            Ok(())
        })
        .unwrap();
        let mut want = got.clone();
        want.sort();
        assert_eq!(got, want);
        // 4 + 3 + 4 rows.
        assert_eq!(n, 11);
        assert_eq!(got.len(), 11);
        assert_eq!(got[0], ("a".to_owned(), "n1".to_owned(), 1, 0));
        assert_eq!(got[1], ("a".to_owned(), "n1".to_owned(), 1, 2));
    }
}
