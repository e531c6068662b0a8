//! Store helpers: create-only writes, whole-object reads, listings and
//! deletes, each failure wrapped with its operation and key. The commit
//! protocol relies only on create-only writes (`PutMode::Create`: S3
//! `If-None-Match: *`), which every object store `object_store` supports,
//! the local directory included.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Deserialize;

/// Store errors with the key they concern.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store failed.
    #[error("{op} {key}: {source}")]
    Store {
        /// What was attempted.
        op: &'static str,
        /// The key.
        key: String,
        /// Why it failed.
        source: object_store::Error,
    },
    /// A bookkeeping object could not be parsed.
    #[error("{key} is not a valid {what}: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// Manifest or lease.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// Wraps an object_store error with its operation and key.
pub fn store_err(op: &'static str, key: &Path) -> impl FnOnce(object_store::Error) -> StoreError {
    let key = key.to_string();
    move |source| StoreError::Store { op, key, source }
}

/// An object's whole content.
pub(crate) async fn get_bytes(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
) -> Result<bytes::Bytes, StoreError> {
    store
        .get(key)
        .await
        .map_err(store_err("get", key))?
        .bytes()
        .await
        .map_err(store_err("get", key))
}

/// Every object under a prefix (recursively).
pub async fn list_all(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
) -> Result<Vec<ObjectMeta>, StoreError> {
    store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(store_err("list", prefix))
}

/// Creates `key` only if absent. `Ok(false)`: it exists.
pub async fn create(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    body: Vec<u8>,
) -> Result<bool, StoreError> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store
        .put_opts(key, PutPayload::from(Bytes::from(body)), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(store_err("create", key)(e)),
    }
}

/// A JSON bookkeeping object (manifest, lease record), parsed.
pub(crate) async fn get_json<T: for<'de> Deserialize<'de>>(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    what: &'static str,
) -> Result<T, StoreError> {
    let bytes = get_bytes(store, key).await?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        what,
        message: e.to_string(),
    })
}

/// Deletes an object; one already gone is not an error.
pub(crate) async fn delete(store: &Arc<dyn ObjectStore>, key: &Path) -> Result<(), StoreError> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_err("delete", key)(e)),
    }
}
