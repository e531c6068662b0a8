//! The raw micro-batch format, in one place: the relays write it, the
//! compactor reads it (docs/data.md describes it).
//!
//! - the Arrow schema: [`raw_schema`] (`schema.rs`, also [`crate::schema`]);
//! - the sort order: [`SORT_KEY`] ascending, then [`TIE_BREAKS`] ascending;
//! - the key-value metadata: [`SCHEMA_KEY`] (and [`COMPACTED_KEY`] on the
//!   compactor's output), [`NODE_GROUPS_KEY`] on an object cut into node
//!   groups;
//! - the writer properties of a raw object: [`raw_writer_properties`];
//! - the encoder: [`encode_by_hour`] from borrowed rows, [`encode_flush`]
//!   (the same, with the points of old hours in one late object),
//!   [`encode_raw_objects`] from owned points (tools and tests that need raw
//!   objects without a relay);
//! - the reader's check: [`check_schema`], which takes version 1 (no
//!   `metric_type` column) too, and [`upgrade_batch`], which reads a
//!   version-1 batch as version 2 (`metric_type` = `unknown`);
//! - the metric type's column: [`METRIC_TYPE_COLUMN`], its values
//!   [`METRIC_TYPES`], [`metric_type_name`] and [`metric_type_of_name`].
//!
//! A flush, top-down through the files (declared below in this order):
//!
//! 1. `encode.rs`: the entry points. [`encode_flush_sets`] (which the others
//!    call) sorts the rows, puts the old hours' rows in one late object, and
//!    cuts each hour's rows into node groups and writes its object.
//! 2. `rows.rs`: the flush's rows in encoding order: the metric and node
//!    names coded (`codes.rs`) and ranked, each row keyed and sorted
//!    (`sort.rs`: a counting sort by hour, metric and node, then each run by
//!    series and time).
//! 3. `groups.rs`: an hour's rows reordered by node group (a counting sort
//!    too), the groups listed in the object's metadata, and the writer
//!    properties that end a page after each group.
//! 4. `object.rs`: one object's bytes. One group: the Arrow writer writes
//!    the record batch of `columns.rs`. Several: the numeric columns of
//!    `columns.rs` are written by the Arrow writer's column writers a group
//!    at a time, and the string columns from codes: their pages
//!    (`pages.rs`), the labels' codes taken from the flush's label sets
//!    (`labels.rs`) or coded from the text (`codes.rs`), each column chunk
//!    written by `coded.rs`.
//!
//! `format.rs` holds what both sides read (sort order, metadata, writer
//! properties, errors, the schema check), `schema.rs` the Arrow schema and
//! the row-by-row batch builder; `tests.rs` checks the encoder, its objects
//! byte for byte against the row-by-row encoder's among them.

// The Arrow schema, `RawRow` and the row-by-row batch builder.
pub mod schema;
// Sort order, metadata, writer properties, errors, the schema check.
mod format;
// The entry points: a flush's rows (or owned points) to objects.
mod encode;
// A flush's rows coded, keyed and in encoding order.
mod rows;
// Small integer codes for strings.
mod codes;
// The counting sorts' keys and runs.
mod sort;
// Node groups: reordering, listing, and their pages' writer properties.
mod groups;
// One object's bytes: the Arrow writer, or node groups written from codes.
mod object;
// The Arrow arrays of an object's rows.
mod columns;
// The pages of the coded columns: codes and levels per node group.
mod pages;
// String column chunks written from codes.
mod coded;
// Label sets coded once per series.
mod labels;

#[cfg(test)]
mod tests;

pub use encode::{
    FlushObjects, RawObject, RawPoint, encode_by_hour, encode_flush, encode_flush_sets,
    encode_raw_objects,
};
pub use format::{
    COMPACTED_KEY, EncodeError, RawVersion, SCHEMA_KEY, SORT_KEY, SchemaMismatch, TIE_BREAKS,
    check_schema, column_indices, metadata, raw_writer_properties, sorting_columns,
};
pub use groups::{
    MAX_GROUP_BITS, MIN_GROUP_ROWS, NODE_GROUPS_KEY, NodeGroup, group_by_node, node_bucket,
    parse_node_groups,
};
pub use labels::{
    LabelSets, LabelSlot, MAX_ENTRIES, MAX_NAMES, MAX_SETS, MAX_TEXT, RowSets, lock_sets,
};
pub use schema::{
    METRIC_TYPE_COLUMN, METRIC_TYPES, RawRow, SCHEMA_VERSION, UNKNOWN_METRIC_TYPE, build_raw_batch,
    metric_type_name, metric_type_of_name, raw_schema, raw_schema_v1, upgrade_batch,
};
