//! Rollups of a unit from its final rows: the rows stream through in key
//! order (the full fold's merge, or the compacted files read back for a
//! backfill), and each series' hour is folded as its rows go by.

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::ArrowError;

use super::agg::Sample;
use super::files::{RollupFile, RollupFiles};
use super::rows::{Row, SeriesKey, dict_str, labels_at};
use super::series::SeriesAcc;
use crate::merge::MergeError;
use horizon_shared::proto::MetricType;

/// Rows a builder collects before it writes them.
const WRITE_ROWS: usize = 1024;

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
        let rd = SampleReader::new(batch)?;
        for i in 0..batch.num_rows() {
            if !self.acc.as_ref().is_some_and(|a| rd.is_of(i, a.key())) {
                self.end_series()?;
                self.acc = Some(SeriesAcc::new(Arc::new(rd.series(i))));
            }
            let (sample, ty) = rd.sample(i);
            if let Some(a) = self.acc.as_mut() {
                a.sample(sample, ty);
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
        let (sample, ty) = self.sample(i);
        (
            (
                dict_str(self.metric, i),
                dict_str(self.node, i),
                self.series[i],
            ),
            sample,
            ty,
        )
    }

    /// Row `i`'s sample and type.
    pub fn sample(&self, i: usize) -> (Sample, MetricType) {
        let ty = self
            .kind
            .filter(|k| !k.is_null(i))
            .map_or(MetricType::Unspecified, |k| {
                super::kind::parse(dict_str(k, i))
            });
        ((self.time[i], self.value[i]), ty)
    }

    /// Whether row `i` is of series `key`, given that row `i - 1`, if
    /// any, is of `key`: a dictionary key equal to the row before's spares
    /// the string compare.
    pub fn is_of(&self, i: usize, key: &SeriesKey) -> bool {
        let same_as_before = |col: &ArrayRef| {
            let keys = col.as_dictionary::<Int32Type>().keys();
            i > 0 && keys.value(i) == keys.value(i - 1)
        };
        key.series_id == self.series[i]
            && (same_as_before(self.node) || key.node == dict_str(self.node, i))
            && (same_as_before(self.metric) || key.metric == dict_str(self.metric, i))
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
