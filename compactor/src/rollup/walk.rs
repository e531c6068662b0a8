//! A rollup file walked in key order beside a sorted list of touched
//! series: runs of rows of other series are handed on as slices, and each
//! touched series with its rows in the file (none if the file has none, at
//! the place its key sorts). A late fold walks each minute file twice with
//! it: once to find the minutes to recompute, once to write the file again
//! with the touched series folded anew. Only one series' rows are held at a
//! time.

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;

use super::rows::{Row, RowReader, SeriesKey, rollup_schema};
use crate::merge::{self, MergeError};

/// What a walk hands on.
pub trait Visitor {
    /// Rows `from..to` of `batch`, of series not touched.
    fn kept(&mut self, batch: &RecordBatch, from: usize, to: usize) -> Result<(), MergeError>;
    /// Touched series `i` and its rows in the file.
    fn series(&mut self, i: usize, rows: &[Row]) -> Result<(), MergeError>;
}

/// Walks the rollup file `src` (none: an empty file) beside `touched`
/// (series in key order).
pub fn walk(
    src: Option<&Path>,
    touched: &[Arc<SeriesKey>],
    v: &mut dyn Visitor,
) -> Result<(), MergeError> {
    let mut j = 0;
    let mut cur: Option<(usize, Vec<Row>)> = None;
    if let Some(src) = src {
        for batch in merge::open_source(src)? {
            let batch = RecordBatch::try_new(rollup_schema(), batch?.columns().to_vec())?;
            let rd = RowReader::new(&batch);
            let mut run = 0;
            for i in 0..batch.num_rows() {
                let k = rd.sort_key(i);
                if let Some((t, rows)) = cur.as_mut() {
                    if touched[*t].sort_key() == k {
                        rows.push(rd.row(i, &touched[*t]));
                        run = i + 1;
                        continue;
                    }
                    if let Some((t, rows)) = cur.take() {
                        v.series(t, &rows)?;
                    }
                }
                while j < touched.len() && touched[j].sort_key() < k {
                    v.kept(&batch, run, i)?;
                    run = i;
                    v.series(j, &[])?;
                    j += 1;
                }
                if j < touched.len() && touched[j].sort_key() == k {
                    v.kept(&batch, run, i)?;
                    cur = Some((j, vec![rd.row(i, &touched[j])]));
                    j += 1;
                    run = i + 1;
                }
            }
            v.kept(&batch, run, batch.num_rows())?;
        }
    }
    if let Some((t, rows)) = cur.take() {
        v.series(t, &rows)?;
    }
    for t in j..touched.len() {
        v.series(t, &[])?;
    }
    Ok(())
}
