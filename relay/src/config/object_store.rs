//! `object_store`: where the Parquet objects go.

use std::path::PathBuf;

use horizon_shared::config::{ConfigError, invalid};
use horizon_shared::store::{S3Options, StoreLocation};
use serde::Deserialize;

/// `object_store`: where Parquet objects go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreConfig {
    /// `s3://bucket/prefix` or `file:///path`; empty means `parquet.output_dir`.
    pub url: String,
    /// Key prefix for raw micro-batches (under the URL's own prefix).
    pub raw_prefix: String,
    /// The S3 keys, beside `url` in the same section: `region` (empty: from
    /// the environment, `AWS_REGION`, else us-east-1), `endpoint` (S3-compatible
    /// stores, e.g. `http://minio:9000`), `path_style` (`endpoint/bucket/key`,
    /// needed by most S3-compatible stores), `allow_http` (test and
    /// on-premises stores), `access_key_id` and `secret_access_key` (use
    /// `${VAR}`; empty: environment, web identity or instance role).
    #[serde(flatten)]
    pub s3: S3Options,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            raw_prefix: "raw".into(),
            s3: S3Options::default(),
        }
    }
}

impl ObjectStoreConfig {
    /// The store: `url` when set, else the local directory `output_dir`
    /// (`parquet.output_dir`).
    pub fn location(&self, output_dir: &str) -> Result<StoreLocation, ConfigError> {
        if self.url.is_empty() {
            if output_dir.is_empty() {
                return Err(invalid(
                    "parquet.output_dir",
                    "must be set when object_store.url is empty",
                ));
            }
            return Ok(StoreLocation::Local(PathBuf::from(output_dir)));
        }
        StoreLocation::parse(&self.url, &self.s3)
            .map_err(|e| invalid(format!("object_store.{}", e.setting), e.message))
    }

    /// The prefix of raw objects, without leading or trailing `/`.
    pub fn raw_prefix(&self) -> String {
        self.raw_prefix.trim_matches('/').to_owned()
    }
}
