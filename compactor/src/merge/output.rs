//! Local Parquet output: files of a target size, and the writer
//! properties of compacted files and spill runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use horizon_shared::raw;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::shared::{MergeError, io, pq};

/// Writer properties of the compacted files: snappy, page-level statistics
/// (min/max per row group and page, so engines prune by metric and node),
/// the sort order declared, the schema version in the key-value metadata.
pub fn output_properties(row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_sorting_columns(Some(raw::sorting_columns()))
        .set_key_value_metadata(Some(raw::metadata(true)))
        .build()
}

/// Properties of the local spill files (sorted runs): quick to write and read.
pub fn spill_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_max_row_group_row_count(Some(64 * 1024))
        .build()
}

/// A finished local output file.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// Where it is.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
}

/// Local Parquet files of a target size, written in sequence.
#[derive(Debug)]
pub struct OutputFiles {
    dir: PathBuf,
    stem: String,
    props: WriterProperties,
    target_bytes: u64,
    current: Option<(PathBuf, ArrowWriter<File>, u64)>,
    done: Vec<LocalFile>,
}

impl OutputFiles {
    /// Files `<dir>/<stem>-NNNN.parquet`, each closed once it holds about
    /// `target_bytes` (checked after each batch).
    pub fn new(dir: &Path, stem: &str, props: WriterProperties, target_bytes: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            stem: stem.to_owned(),
            props,
            target_bytes,
            current: None,
            done: Vec::new(),
        }
    }

    /// Appends a batch (in slices of 1,024 rows, so files end close to the target).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), MergeError> {
        const SLICE: usize = 1024;
        let mut off = 0;
        while off < batch.num_rows() {
            let len = SLICE.min(batch.num_rows() - off);
            self.write_slice(&batch.slice(off, len))?;
            off += len;
        }
        Ok(())
    }

    fn write_slice(&mut self, batch: &RecordBatch) -> Result<(), MergeError> {
        if self.current.is_none() {
            let path = (self.dir).join(format!("{}-{:04}.parquet", self.stem, self.done.len()));
            let file = File::create(&path).map_err(io(&path))?;
            let w =
                ArrowWriter::try_new(file, Arc::clone(&batch.schema()), Some(self.props.clone()))
                    .map_err(pq(&path))?;
            self.current = Some((path, w, 0));
        }
        if let Some((path, w, rows)) = self.current.as_mut() {
            w.write(batch).map_err(pq(path))?;
            *rows += batch.num_rows() as u64;
            let size = (w.bytes_written() + w.in_progress_size()) as u64;
            if size >= self.target_bytes {
                self.close_current()?;
            }
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), MergeError> {
        if let Some((path, w, rows)) = self.current.take() {
            w.close().map_err(pq(&path))?;
            let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
            self.done.push(LocalFile { path, rows, bytes });
        }
        Ok(())
    }

    /// Closes the last file and returns them all.
    pub fn finish(mut self) -> Result<Vec<LocalFile>, MergeError> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }
}
