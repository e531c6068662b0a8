//! `spool`: the durable on-disk log every batch goes through.

use std::path::PathBuf;
use std::time::Duration;

use horizon_shared::config::check::{one_of, positive};
use horizon_shared::config::{ConfigError, invalid};
use serde::Deserialize;

use crate::spool::{SpoolOptions, SyncPolicy};

/// `spool`: the durable on-disk log every batch goes through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory of the segment files (created if missing).
    pub dir: String,
    /// Size cap in MiB; beyond it the oldest records are dropped (counted).
    pub max_mib: u64,
    /// A segment file is closed and a new one started at this size, MiB.
    pub segment_mib: u64,
    /// `every_batch` (fsync each append), `interval` or `never` (the OS decides).
    pub sync: String,
    /// With `sync: interval`: fsync at most this often, milliseconds.
    pub sync_interval_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: "data/spool".into(),
            max_mib: 1024,
            segment_mib: 8,
            sync: "interval".into(),
            sync_interval_ms: 1000,
        }
    }
}

/// The `sync` words.
#[derive(Debug, Clone, Copy)]
enum Sync {
    EveryBatch,
    Interval,
    Never,
}

/// The `spool` section after validation.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    /// Spool directory.
    pub dir: PathBuf,
    /// Spool options.
    pub options: SpoolOptions,
}

impl SpoolConfig {
    /// Checks the section: its directory and the spool's options.
    pub fn validate(&self) -> Result<SpoolSettings, ConfigError> {
        if self.dir.is_empty() {
            return Err(invalid("spool.dir", "must not be empty"));
        }
        positive("spool.max_mib", self.max_mib)?;
        if self.segment_mib == 0 || self.segment_mib > self.max_mib {
            return Err(invalid(
                "spool.segment_mib",
                format!(
                    "{} must be between 1 and spool.max_mib ({})",
                    self.segment_mib, self.max_mib
                ),
            ));
        }
        let words = [
            ("every_batch", Sync::EveryBatch),
            ("interval", Sync::Interval),
            ("never", Sync::Never),
        ];
        let sync = match one_of("spool.sync", &self.sync, &words)? {
            Sync::EveryBatch => SyncPolicy::EveryBatch,
            Sync::Never => SyncPolicy::Never,
            Sync::Interval => {
                positive("spool.sync_interval_ms", self.sync_interval_ms)?;
                SyncPolicy::Interval(Duration::from_millis(self.sync_interval_ms))
            }
        };
        Ok(SpoolSettings {
            dir: PathBuf::from(&self.dir),
            options: SpoolOptions {
                max_bytes: self.max_mib.saturating_mul(1 << 20),
                segment_bytes: self.segment_mib.saturating_mul(1 << 20),
                sync,
            },
        })
    }
}
