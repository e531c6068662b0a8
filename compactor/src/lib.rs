//! The Horizon telemetry compactor.
//!
//! Not implemented yet: this crate reserves its place in the workspace. It
//! will merge each closed hour of the relays' raw Parquet micro-batches into
//! hourly, snappy-compressed, hive-partitioned files (see README, "Status").
