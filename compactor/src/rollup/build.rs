//! Rollups of a unit from its final rows: the rows stream through in key
//! order (the full fold's merge, or the compacted files read back for a
//! backfill), and each series' hour is folded as its rows go by.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::ArrowError;
use parquet::arrow::ArrowWriter;

use super::agg::Sample;
use super::rows::{Row, SeriesKey, dict_str, labels_at, rollup_properties, to_batch};
use super::series::SeriesAcc;
use crate::commit::FirstKey;
use crate::merge::MergeError;
use horizon_shared::proto::MetricType;

/// Rows a builder collects before it writes them.
const WRITE_ROWS: usize = 1024;

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

/// Local rollup files of a target size, each closed only between series
/// (every batch written ends with a series), so a series is in one file.
#[derive(Debug)]
pub struct RollupFiles {
    dir: PathBuf,
    stem: String,
    level: &'static str,
    row_group_rows: usize,
    target_bytes: u64,
    current: Option<(PathBuf, ArrowWriter<File>, u64, Option<FirstKey>)>,
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
            row_group_rows,
            target_bytes,
            current: None,
            done: Vec::new(),
        }
    }

    /// Appends rows (whole series).
    pub fn write_rows(&mut self, rows: &[Row]) -> Result<(), MergeError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let first = FirstKey {
            metric: first.key.metric.clone(),
            node: first.key.node.clone(),
            series_id: first.key.series_id,
        };
        self.write(&to_batch(rows)?, first)
    }

    /// Appends a batch of the rollup schema (whole series) whose first row
    /// is of series `first`.
    pub fn write(&mut self, batch: &RecordBatch, first: FirstKey) -> Result<(), MergeError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.current.is_none() {
            let path = (self.dir).join(format!("{}-{:04}.parquet", self.stem, self.done.len()));
            let file = File::create(&path).map_err(|source| MergeError::Io {
                path: path.clone(),
                source,
            })?;
            let props = rollup_properties(self.level, self.row_group_rows);
            let w = ArrowWriter::try_new(file, batch.schema(), Some(props))
                .map_err(crate::merge::pq(&path))?;
            self.current = Some((path, w, 0, Some(first)));
        }
        if let Some((path, w, rows, _)) = self.current.as_mut() {
            w.write(batch).map_err(crate::merge::pq(path))?;
            *rows += batch.num_rows() as u64;
            if (w.bytes_written() + w.in_progress_size()) as u64 >= self.target_bytes {
                self.close_current()?;
            }
        }
        Ok(())
    }

    /// Ends the current row group (a day's file ends one after each unit's
    /// hour rows, so each row group is sorted as its footer declares).
    pub fn end_row_group(&mut self) -> Result<(), MergeError> {
        if let Some((path, w, _, _)) = self.current.as_mut() {
            w.flush().map_err(crate::merge::pq(path))?;
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), MergeError> {
        if let Some((path, w, rows, first)) = self.current.take() {
            w.close().map_err(crate::merge::pq(&path))?;
            let bytes = std::fs::metadata(&path)
                .map_err(|source| MergeError::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            self.done.push(RollupFile {
                path,
                rows,
                bytes,
                first,
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

/// A unit's rollup files, local.
#[derive(Debug, Default)]
pub struct Built {
    /// Minute rollups, in series order.
    pub minute: Vec<RollupFile>,
    /// The hour rollup (one row per series).
    pub hour: Vec<RollupFile>,
}

/// Rollups of a unit built from its final rows, in key order.
#[derive(Debug)]
pub struct Builder {
    hour_start: i64,
    acc: Option<SeriesAcc>,
    minutes: Vec<Row>,
    hours: Vec<Row>,
    minute_files: RollupFiles,
    hour_files: RollupFiles,
}

impl Builder {
    /// Rollups of the hour starting at `hour_start` (Unix ns), written to `dir`.
    pub fn new(dir: &Path, hour_start: i64, row_group_rows: usize, target_bytes: u64) -> Self {
        Self {
            hour_start,
            acc: None,
            minutes: Vec::with_capacity(WRITE_ROWS * 2),
            hours: Vec::new(),
            minute_files: RollupFiles::new(dir, "r1m", "1m", row_group_rows, target_bytes),
            hour_files: RollupFiles::new(dir, "r1h", "1h", row_group_rows, u64::MAX),
        }
    }

    /// Folds the next batch of final rows (raw schema, key order).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), MergeError> {
        let col = |n: &str| batch.column_by_name(n);
        let missing = |n: &str| arrow_schema::ArrowError::SchemaError(format!("no column {n}"));
        let (Some(metric), Some(node), Some(series), Some(time), Some(value), Some(labels)) = (
            col("metric"),
            col("node"),
            col("series_id"),
            col("time"),
            col("value"),
            col("labels"),
        ) else {
            return Err(missing("of the raw schema").into());
        };
        let kinds = col(horizon_shared::raw::METRIC_TYPE_COLUMN);
        let metric_keys = metric.as_dictionary::<Int32Type>().keys();
        let node_keys = node.as_dictionary::<Int32Type>().keys();
        let series = series.as_primitive::<Int64Type>().values();
        let time = time.as_primitive::<TimestampNanosecondType>().values();
        let value = value.as_primitive::<Float64Type>().values();
        for i in 0..batch.num_rows() {
            let same = match (&self.acc, i) {
                (None, _) => false,
                (Some(a), 0) => {
                    let k = a.key();
                    k.series_id == series[0]
                        && k.node == dict_str(node, 0)
                        && k.metric == dict_str(metric, 0)
                }
                (Some(a), _) => {
                    a.key().series_id == series[i]
                        && (node_keys.value(i) == node_keys.value(i - 1)
                            || a.key().node == dict_str(node, i))
                        && (metric_keys.value(i) == metric_keys.value(i - 1)
                            || a.key().metric == dict_str(metric, i))
                }
            };
            if !same {
                self.end_series()?;
                self.acc = Some(SeriesAcc::new(Arc::new(SeriesKey {
                    metric: dict_str(metric, i).to_owned(),
                    node: dict_str(node, i).to_owned(),
                    series_id: series[i],
                    labels: labels_at(labels.as_map(), i),
                })));
            }
            let ty = kinds.map_or(MetricType::Unspecified, |k| {
                if k.is_null(i) {
                    MetricType::Unspecified
                } else {
                    super::kind::parse(dict_str(k, i))
                }
            });
            if let Some(a) = self.acc.as_mut() {
                a.sample((time[i], value[i]), ty);
            }
        }
        Ok(())
    }

    fn end_series(&mut self) -> Result<(), MergeError> {
        let Some(acc) = self.acc.take() else {
            return Ok(());
        };
        let (minutes, hour) = acc.finish(self.hour_start);
        self.minutes.extend(minutes);
        self.hours.extend(hour);
        // Written in batches of about a thousand rows (whole series), so a
        // file ends close to the target size.
        if self.minutes.len() >= WRITE_ROWS {
            self.minute_files.write_rows(&self.minutes)?;
            self.minutes.clear();
        }
        if self.hours.len() >= WRITE_ROWS {
            self.hour_files.write_rows(&self.hours)?;
            self.hours.clear();
        }
        Ok(())
    }

    /// Writes what is left and closes the files.
    pub fn finish(mut self) -> Result<Built, MergeError> {
        self.end_series()?;
        self.minute_files.write_rows(&self.minutes)?;
        self.hour_files.write_rows(&self.hours)?;
        Ok(Built {
            minute: self.minute_files.finish()?,
            hour: self.hour_files.finish()?,
        })
    }
}

/// Rows of a raw-schema batch read one by one (late rows).
#[derive(Debug)]
pub struct SampleReader<'a> {
    metric: &'a ArrayRef,
    node: &'a ArrayRef,
    labels: &'a ArrayRef,
    series: &'a [i64],
    time: &'a [i64],
    value: &'a [f64],
    kind: Option<&'a ArrayRef>,
}

impl<'a> SampleReader<'a> {
    /// A reader over `batch` (raw schema, version 1 or 2).
    pub fn new(batch: &'a RecordBatch) -> Result<Self, ArrowError> {
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .ok_or_else(|| ArrowError::SchemaError(format!("no column {n}")))
        };
        Ok(Self {
            metric: col("metric")?,
            node: col("node")?,
            labels: col("labels")?,
            series: col("series_id")?.as_primitive::<Int64Type>().values(),
            time: col("time")?
                .as_primitive::<TimestampNanosecondType>()
                .values(),
            value: col("value")?.as_primitive::<Float64Type>().values(),
            kind: batch.column_by_name(horizon_shared::raw::METRIC_TYPE_COLUMN),
        })
    }

    /// Row `i`: its sort key, sample and type.
    pub fn row(&self, i: usize) -> ((&str, &str, i64), Sample, MetricType) {
        let ty = self
            .kind
            .filter(|k| !k.is_null(i))
            .map_or(MetricType::Unspecified, |k| {
                super::kind::parse(dict_str(k, i))
            });
        (
            (
                dict_str(self.metric, i),
                dict_str(self.node, i),
                self.series[i],
            ),
            (self.time[i], self.value[i]),
            ty,
        )
    }

    /// Row `i`'s series.
    pub fn series(&self, i: usize) -> SeriesKey {
        SeriesKey {
            metric: dict_str(self.metric, i).to_owned(),
            node: dict_str(self.node, i).to_owned(),
            series_id: self.series[i],
            labels: labels_at(self.labels.as_map(), i),
        }
    }
}
