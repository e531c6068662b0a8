//! Object-store locations shared by the relay (which writes raw objects) and
//! the compactor (which reads them and writes the hourly files): parsing a
//! store URL and building an `object_store` client for it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

/// Where objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local directory.
    Local(PathBuf),
    /// An S3 bucket.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
        /// Region, if set.
        region: Option<String>,
        /// Endpoint override, if set.
        endpoint: Option<String>,
        /// Path-style addressing.
        path_style: bool,
        /// Plain HTTP allowed.
        allow_http: bool,
        /// Static credentials (key id, secret); `None`: the default chain.
        credentials: Option<(String, String)>,
    },
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "local directory {}", dir.display()),
            Self::S3 {
                bucket,
                prefix,
                endpoint,
                ..
            } => {
                write!(f, "s3://{bucket}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                if let Some(e) = endpoint {
                    write!(f, " at {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// S3 options that go with an `s3://` URL. Empty strings mean "not set".
/// Deserializable (missing keys take the defaults, unknown keys are
/// refused) so that configuration files can embed these keys as they are.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Options {
    /// Region; empty: from the environment (`AWS_REGION`), else us-east-1.
    pub region: String,
    /// Endpoint override for S3-compatible stores.
    pub endpoint: String,
    /// Path-style addressing.
    pub path_style: bool,
    /// Allow plain-HTTP endpoints.
    pub allow_http: bool,
    /// Static access key id (set together with the secret).
    pub access_key_id: String,
    /// Static secret access key.
    pub secret_access_key: String,
}

/// A location that cannot be used: which setting is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct LocationError {
    /// The setting at fault: `url`, `endpoint` or `secret_access_key`.
    pub setting: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn bad(setting: &'static str, message: impl Into<String>) -> LocationError {
    LocationError {
        setting,
        message: message.into(),
    }
}

impl StoreLocation {
    /// Parses `s3://bucket/prefix`, `file:///path` or a plain directory path.
    pub fn parse(url: &str, s3: &S3Options) -> Result<Self, LocationError> {
        if url.is_empty() {
            return Err(bad("url", "is empty"));
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(bad(
                    "url",
                    "file:// needs a path, e.g. file:///var/lib/horizon/objects",
                ));
            }
            return Ok(Self::Local(PathBuf::from(path)));
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            if url.contains("://") {
                return Err(bad(
                    "url",
                    format!("{url:?} must start with s3:// or file://, or be a directory path"),
                ));
            }
            return Ok(Self::Local(PathBuf::from(url)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("url", format!("{url:?} has no bucket name")));
        }
        if !s3.endpoint.is_empty()
            && !s3.endpoint.starts_with("http://")
            && !s3.endpoint.starts_with("https://")
        {
            return Err(bad(
                "endpoint",
                format!("{:?} must start with http:// or https://", s3.endpoint),
            ));
        }
        let credentials = match (s3.access_key_id.is_empty(), s3.secret_access_key.is_empty()) {
            (true, true) => None,
            (false, false) => Some((s3.access_key_id.clone(), s3.secret_access_key.clone())),
            _ => {
                return Err(bad(
                    "secret_access_key",
                    "set both access_key_id and secret_access_key, or neither",
                ));
            }
        };
        Ok(Self::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            region: (!s3.region.is_empty()).then(|| s3.region.clone()),
            endpoint: (!s3.endpoint.is_empty()).then(|| s3.endpoint.clone()),
            path_style: s3.path_style,
            allow_http: s3.allow_http,
            credentials,
        })
    }

    /// Builds the store. S3 credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), a
    /// web identity, or the instance / task role, in object_store's usual
    /// order. A local directory is created if missing; writes to it are
    /// fsynced (file and folder). The client retries
    /// quick blips itself (twice, within 10 s); callers own longer policies.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
        match self {
            Self::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("cannot create {}: {e}", dir.display()).into(),
                })?;
                // fsync: a durable ack on a local directory survives power loss.
                // Cleanup: deleting an hour's last object removes its folder.
                Ok(Arc::new(
                    LocalFileSystem::new_with_prefix(dir)?
                        .with_fsync(true)
                        .with_automatic_cleanup(true),
                ))
            }
            Self::S3 {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        let none = S3Options::default();
        assert_eq!(
            StoreLocation::parse("data/objects", &none),
            Ok(StoreLocation::Local("data/objects".into()))
        );
        assert_eq!(
            StoreLocation::parse("file:///var/x", &none),
            Ok(StoreLocation::Local("/var/x".into()))
        );
        let s3 = StoreLocation::parse("s3://b/p/q/", &none).unwrap();
        assert!(
            matches!(s3, StoreLocation::S3 { ref bucket, ref prefix, .. } if bucket == "b" && prefix == "p/q")
        );
        assert_eq!(
            StoreLocation::parse("s3:///x", &none).unwrap_err().setting,
            "url"
        );
        assert_eq!(
            StoreLocation::parse("gs://b", &none).unwrap_err().setting,
            "url"
        );
        let half = S3Options {
            access_key_id: "k".into(),
            ..S3Options::default()
        };
        assert_eq!(
            StoreLocation::parse("s3://b", &half).unwrap_err().setting,
            "secret_access_key"
        );
        let ep = S3Options {
            endpoint: "localhost:9000".into(),
            ..S3Options::default()
        };
        assert_eq!(
            StoreLocation::parse("s3://b", &ep).unwrap_err().setting,
            "endpoint"
        );
    }
}
