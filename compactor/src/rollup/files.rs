//! Local rollup files of a target size, with row groups that a reader
//! filtering on `metric` can prune (docs/data.md, "Rollups").
//!
//! Rows arrive in sort order (metric, node, series_id, interval start). A
//! row group ends where the metric changes once it holds at least a
//! sixteenth of `row_group_rows` (8,192 rows by default), and in any case at
//! `row_group_rows`. A metric with many series so has row groups of its
//! own, whose `metric` statistics are that metric alone, and small metrics
//! share one, so that a small fleet's files do not grow a footer entry per
//! metric. A file ends only where a series starts, so a series is in one
//! file.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;

use super::rows::{Row, RowReader, rollup_properties, to_batch};
use crate::commit::FirstKey;
use crate::merge::MergeError;

/// A finished local rollup file.
#[derive(Debug, Clone)]
pub struct RollupFile {
    /// Where it is.
    pub path: PathBuf,
    /// Rows.
    pub rows: u64,
    /// Size.
    pub bytes: u64,
    /// Its first row's series.
    pub first: Option<FirstKey>,
}

/// The file being written.
#[derive(Debug)]
struct Current {
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
    first: FirstKey,
}

/// Local rollup files of a target size (see the module's header).
#[derive(Debug)]
pub struct RollupFiles {
    dir: PathBuf,
    stem: String,
    level: &'static str,
    row_group_rows: usize,
    target_bytes: u64,
    current: Option<Current>,
    /// The last row written: its series.
    last: Option<FirstKey>,
    done: Vec<RollupFile>,
}

impl RollupFiles {
    /// Files `<dir>/<stem>-NNNN.parquet` of level `level` (`1m`, `1h`).
    pub fn new(
        dir: &Path,
        stem: &str,
        level: &'static str,
        row_group_rows: usize,
        target_bytes: u64,
    ) -> Self {
        Self {
            dir: dir.to_owned(),
            stem: stem.to_owned(),
            level,
            row_group_rows: row_group_rows.max(1),
            target_bytes,
            current: None,
            last: None,
            done: Vec::new(),
        }
    }

    /// Rows at which a row group may end where the metric changes.
    fn min_group_rows(&self) -> usize {
        (self.row_group_rows / 16).max(1)
    }

    /// Appends rows, in sort order after those written before.
    pub fn write_rows(&mut self, rows: &[Row]) -> Result<(), MergeError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(&to_batch(rows)?)
    }

    /// Appends a batch of the rollup schema, in sort order after the rows
    /// written before.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), MergeError> {
        let rd = RowReader::new(batch);
        let mut from = 0;
        for i in 1..=batch.num_rows() {
            if i == batch.num_rows() || rd.sort_key(i).0 != rd.sort_key(i - 1).0 {
                self.write_metric_run(batch, from, i)?;
                from = i;
            }
        }
        Ok(())
    }

    /// Writes rows `from..to` of `batch`, all of one metric.
    fn write_metric_run(
        &mut self,
        batch: &RecordBatch,
        mut from: usize,
        to: usize,
    ) -> Result<(), MergeError> {
        let rd = RowReader::new(batch);
        // A file over its target ends where the next series starts.
        if self.current.as_ref().is_some_and(|c| {
            (c.writer.bytes_written() + c.writer.in_progress_size()) as u64 >= self.target_bytes
        }) {
            let last = self.last.as_ref().map(FirstKey::as_key);
            let starts = |i: usize| {
                if i == from {
                    last != Some(rd.sort_key(i))
                } else {
                    rd.sort_key(i) != rd.sort_key(i - 1)
                }
            };
            match (from..to).find(|&i| starts(i)) {
                None => return self.append(batch, from, to),
                Some(s) => {
                    self.append(batch, from, s)?;
                    self.close_current()?;
                    from = s;
                }
            }
        }
        let min_group = self.min_group_rows();
        let metric = rd.sort_key(from).0;
        if let Some(c) = self.current.as_mut()
            && self.last.as_ref().is_none_or(|l| l.metric != metric)
            && c.writer.in_progress_rows() >= min_group
        {
            c.writer.flush().map_err(crate::merge::pq(&c.path))?;
        }
        self.append(batch, from, to)
    }

    /// Writes rows `from..to` of `batch` to the current file, opening one
    /// if there is none.
    fn append(&mut self, batch: &RecordBatch, from: usize, to: usize) -> Result<(), MergeError> {
        if to <= from {
            return Ok(());
        }
        let rd = RowReader::new(batch);
        let key = |i: usize| {
            let (metric, node, series_id) = rd.sort_key(i);
            FirstKey {
                metric: metric.to_owned(),
                node: node.to_owned(),
                series_id,
            }
        };
        let c = match self.current.as_mut() {
            Some(c) => c,
            None => {
                let path = (self.dir).join(format!("{}-{:04}.parquet", self.stem, self.done.len()));
                let file = File::create(&path).map_err(|source| MergeError::Io {
                    path: path.clone(),
                    source,
                })?;
                let props = rollup_properties(self.level, self.row_group_rows);
                let writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
                    .map_err(crate::merge::pq(&path))?;
                self.current.insert(Current {
                    path,
                    writer,
                    rows: 0,
                    first: key(from),
                })
            }
        };
        c.writer
            .write(&batch.slice(from, to - from))
            .map_err(crate::merge::pq(&c.path))?;
        c.rows += (to - from) as u64;
        self.last = Some(key(to - 1));
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), MergeError> {
        if let Some(c) = self.current.take() {
            c.writer.close().map_err(crate::merge::pq(&c.path))?;
            let bytes = std::fs::metadata(&c.path)
                .map_err(|source| MergeError::Io {
                    path: c.path.clone(),
                    source,
                })?
                .len();
            self.done.push(RollupFile {
                path: c.path,
                rows: c.rows,
                bytes,
                first: Some(c.first),
            });
        }
        Ok(())
    }

    /// Closes the last file and returns them all.
    pub fn finish(mut self) -> Result<Vec<RollupFile>, MergeError> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::statistics::Statistics;

    use super::*;
    use crate::rollup::{Agg, SeriesKey};
    use horizon_shared::proto::MetricType;

    /// `n` series of `metric`, `minutes` rows each.
    fn rows(metric: &str, n: i64, minutes: i64) -> Vec<Row> {
        let mut out = Vec::new();
        for s in 0..n {
            let key = Arc::new(SeriesKey {
                metric: metric.to_owned(),
                node: format!("node-{s:04}"),
                series_id: s,
                labels: vec![("gpu".to_owned(), s.to_string())],
            });
            for m in 0..minutes {
                let agg = Agg::start((m * 60_000_000_000, m as f64), None);
                out.push(Row {
                    key: key.clone(),
                    metric_type: MetricType::Gauge,
                    start: m * 60_000_000_000,
                    agg,
                });
            }
        }
        out
    }

    /// Each row group's (rows, metric min, metric max).
    fn groups(path: &Path) -> Vec<(i64, String, String)> {
        let r = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        let md = r.metadata();
        (0..md.num_row_groups())
            .map(|g| {
                let rg = md.row_group(g);
                let Some(Statistics::ByteArray(s)) = rg.column(1).statistics() else {
                    panic!("no metric statistics");
                };
                let text = |b: Option<&parquet::data_type::ByteArray>| {
                    String::from_utf8(b.unwrap().data().to_vec()).unwrap()
                };
                (rg.num_rows(), text(s.min_opt()), text(s.max_opt()))
            })
            .collect()
    }

    #[test]
    fn row_groups_end_where_a_large_metric_starts_or_ends() {
        let dir = tempfile::tempdir().unwrap();
        // 1,024-row groups at most; a metric change ends one from 64 rows.
        let mut out = RollupFiles::new(dir.path(), "t", "1m", 1024, u64::MAX);
        // Small metrics share a group, a large one has its own.
        for (metric, n) in [("a", 10), ("b", 10), ("c", 30), ("d", 1), ("e", 1)] {
            // Written in pieces that cut series and metrics anywhere.
            let r = rows(metric, n, 60);
            for piece in r.chunks(97) {
                out.write_rows(piece).unwrap();
            }
        }
        let files = out.finish().unwrap();
        assert_eq!(files.len(), 1);
        let g = groups(&files[0].path);
        let want: Vec<(i64, String, String)> = [
            (600, "a", "a"),
            (600, "b", "b"),
            (1024, "c", "c"),
            (776, "c", "c"),
            (120, "d", "e"),
        ]
        .into_iter()
        .map(|(n, lo, hi)| (n, lo.to_owned(), hi.to_owned()))
        .collect();
        assert_eq!(g, want);
    }

    #[test]
    fn files_end_between_series_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = RollupFiles::new(dir.path(), "t", "1m", 1024, 1);
        let r = rows("a", 5, 60);
        for piece in r.chunks(45) {
            out.write_rows(piece).unwrap();
        }
        let files = out.finish().unwrap();
        // Every file is over the 1-byte target after its first piece, and
        // ends at the next series.
        assert_eq!(files.len(), 5);
        for (s, f) in files.iter().enumerate() {
            assert_eq!(f.rows, 60, "file {s}");
            assert_eq!(f.first.as_ref().map(|k| k.series_id), Some(s as i64));
        }
    }
}
