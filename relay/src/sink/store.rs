//! Builds the object store the Parquet sink writes to: a local directory
//! (the embedded default) or S3 (and S3-compatible stores).

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::config::StoreLocation;

/// Builds the store. S3 credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), a web
/// identity, or the instance / task role, in object_store's usual order.
pub fn build(location: &StoreLocation) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    match location {
        StoreLocation::Local(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| object_store::Error::Generic {
                store: "LocalFileSystem",
                source: format!("cannot create {}: {e}", dir.display()).into(),
            })?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(dir)?))
        }
        StoreLocation::S3 {
            bucket,
            prefix,
            region,
            endpoint,
            path_style,
            allow_http,
            credentials,
        } => {
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some((id, secret)) = credentials {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
            }
            if let Some(r) = region {
                b = b.with_region(r);
            }
            if let Some(e) = endpoint {
                b = b.with_endpoint(e);
            }
            // The batcher owns the retry policy (forever, with backoff, counted
            // and logged); object_store only retries quick blips itself.
            let retry = RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            };
            // Client options replace earlier ones wholesale: set allow_http here.
            let options = ClientOptions::new()
                .with_timeout(Duration::from_secs(30))
                .with_connect_timeout(Duration::from_secs(5))
                .with_allow_http(*allow_http);
            let s3: Arc<dyn ObjectStore> = Arc::new(
                b.with_virtual_hosted_style_request(!path_style)
                    .with_retry(retry)
                    .with_client_options(options)
                    .build()?,
            );
            if prefix.is_empty() {
                Ok(s3)
            } else {
                Ok(Arc::new(PrefixStore::new(s3, prefix.as_str())))
            }
        }
    }
}
