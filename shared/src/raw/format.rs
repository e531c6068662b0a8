//! The raw format's definitions, read by both sides: the sort order
//! ([`SORT_KEY`], [`TIE_BREAKS`]), the key-value metadata, the writer
//! properties of a raw object, the encoder's errors, and the reader's
//! schema check ([`check_schema`], which takes both versions).

use arrow_schema::{ArrowError, Schema};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::schema::{SCHEMA_VERSION, raw_schema, raw_schema_v1};

/// Key-value metadata key holding [`SCHEMA_VERSION`].
pub const SCHEMA_KEY: &str = "horizon.schema";

/// Key-value metadata key marking a compacted file (`"true"`).
pub const COMPACTED_KEY: &str = "horizon.compacted";

/// The sort key, ascending: the order raw objects and compacted files are
/// written in, the order readers prune and merge by, and (as a whole) the
/// identity of a point.
pub const SORT_KEY: [&str; 4] = ["metric", "node", "series_id", "time"];

/// Tie-breaks after the key, ascending: of several copies of a point, the
/// first in this order, the first received, is kept (docs/data.md,
/// "Duplicates").
pub const TIE_BREAKS: [&str; 3] = ["received_at", "relay", "value"];

/// Indices in [`raw_schema`] of the named columns.
pub fn column_indices<const N: usize>(names: [&str; N]) -> Result<[usize; N], ArrowError> {
    let schema = raw_schema();
    let mut out = [0; N];
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = schema.index_of(name)?;
    }
    Ok(out)
}

/// The declared sort order ([`SORT_KEY`], ascending) as Parquet sorting columns.
pub fn sorting_columns() -> Vec<SortingColumn> {
    let schema = raw_schema();
    SORT_KEY
        .iter()
        .filter_map(|n| schema.index_of(n).ok())
        .map(|i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: false,
        })
        .collect()
}

/// The key-value metadata: the schema version, and the compacted mark if
/// `compacted`.
pub fn metadata(compacted: bool) -> Vec<KeyValue> {
    let mut kv = vec![KeyValue::new(SCHEMA_KEY.into(), SCHEMA_VERSION.to_owned())];
    if compacted {
        kv.push(KeyValue::new(COMPACTED_KEY.into(), "true".to_owned()));
    }
    kv
}

/// Writer properties of a raw object: zstd or snappy, the schema version in
/// the metadata, the sort order declared, the `value` column in byte stream
/// split encoding (no dictionary: on the synthetic hour's data an object is
/// 40% smaller than with a dictionary of values, which every compactor shard
/// would read whole, and encoding it hashes nothing), and no statistics:
/// only the compactor reads raw objects, and it reads them whole or by node
/// group, never by a column's range (computing them took about a tenth of
/// the encoder's instructions, mostly comparing strings).
pub fn raw_writer_properties(zstd: bool) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(if zstd {
            Compression::ZSTD(ZstdLevel::default())
        } else {
            Compression::SNAPPY
        })
        .set_column_dictionary_enabled("value".into(), false)
        .set_column_encoding("value".into(), Encoding::BYTE_STREAM_SPLIT)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_key_value_metadata(Some(metadata(false)))
        .set_sorting_columns(Some(sorting_columns()))
        .build()
}

/// Why rows could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The rows do not make a batch of the raw schema.
    #[error("building the record batch: {0}")]
    Batch(#[source] ArrowError),
    /// The Parquet writer could not start.
    #[error("starting the Parquet writer: {0}")]
    Start(#[source] ParquetError),
    /// Writing the batch failed.
    #[error("writing Parquet: {0}")]
    Write(#[source] ParquetError),
    /// Closing the file failed.
    #[error("finishing Parquet: {0}")]
    Finish(#[source] ParquetError),
}

/// A schema that is not the raw schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaMismatch {
    /// The column count differs from both versions'.
    #[error("{got} columns, the raw schema has {want} ({} in version 1)", .want - 1)]
    Columns {
        /// Columns found.
        got: usize,
        /// Columns of the raw schema.
        want: usize,
    },
    /// A column differs in name or type.
    #[error(
        "column {got:?} of type {got_type} where the raw schema has {want:?} of type {want_type}"
    )]
    Column {
        /// The column's name.
        got: String,
        /// Its type.
        got_type: String,
        /// The raw schema's column at that position.
        want: String,
        /// Its type.
        want_type: String,
    },
}

/// Which version of the raw schema an object's columns are of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawVersion {
    /// Version 1: no `metric_type` column (read as `unknown`, see
    /// [`upgrade_batch`](super::upgrade_batch)).
    V1,
    /// Version 2: [`raw_schema`].
    V2,
}

/// Checks that a schema read from a raw or compacted object is the raw
/// schema of version 2, or of version 1 (names and types; metadata aside),
/// and says which. The columns decide, not the `horizon.schema` metadata,
/// which other writers (pyarrow rewriting an object) may drop.
pub fn check_schema(schema: &Schema) -> Result<RawVersion, SchemaMismatch> {
    let (want, version) = if schema.fields().len() == raw_schema_v1().fields().len() {
        (raw_schema_v1(), RawVersion::V1)
    } else {
        (raw_schema(), RawVersion::V2)
    };
    if schema.fields().len() != want.fields().len() {
        return Err(SchemaMismatch::Columns {
            got: schema.fields().len(),
            want: want.fields().len(),
        });
    }
    for (got, want) in schema.fields().iter().zip(want.fields()) {
        if got.name() != want.name() || got.data_type() != want.data_type() {
            return Err(SchemaMismatch::Column {
                got: got.name().clone(),
                got_type: got.data_type().to_string(),
                want: want.name().clone(),
                want_type: want.data_type().to_string(),
            });
        }
    }
    Ok(version)
}
