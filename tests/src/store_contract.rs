//! What the compactor's commit protocol and the relay's Parquet sink need
//! from an object store, as one suite every store runs (the local
//! directory, the in-memory store, S3 on moto): `tests/tests/store.rs`.
//! Modelled on object_store's own `integration.rs`.
//!
//! - create-only writes (`PutMode::Create` → `AlreadyExists`): manifests,
//!   lease records and raw objects;
//! - copy over an existing object: settling copies staged files into place,
//!   again after a crash;
//! - deleting a missing object is not a failure (`Ok` or `NotFound`):
//!   settling repeats deletes after a crash;
//! - listing under a prefix, recursively and by delimiter: manifests,
//!   leases, raw objects of an hour, the raw hours;
//! - streamed multipart uploads and streamed downloads: compacted files.
//!
//! Each case works under its own prefix, so cases can share one store.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncWriteExt;

async fn put(store: &dyn ObjectStore, key: &str, body: &'static [u8]) {
    store
        .put(&Path::from(key), PutPayload::from_static(body))
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

async fn get(store: &dyn ObjectStore, key: &str) -> Bytes {
    store
        .get(&Path::from(key))
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("read {key}: {e}"))
}

async fn list(store: &dyn ObjectStore, prefix: &str) -> BTreeSet<String> {
    store
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("list {prefix}: {e}"))
}

/// A create-only write succeeds once; the second fails with
/// `AlreadyExists` and leaves the first write's bytes.
pub async fn create_only_writes(store: &dyn ObjectStore) {
    let key = Path::from("contract/create/g0000001.json");
    let create = || PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    store
        .put_opts(&key, PutPayload::from_static(b"first"), create())
        .await
        .expect("the first create-only write succeeds");
    match store
        .put_opts(&key, PutPayload::from_static(b"second"), create())
        .await
    {
        Err(object_store::Error::AlreadyExists { .. }) => {}
        other => panic!("a second create-only write must fail with AlreadyExists: {other:?}"),
    }
    assert_eq!(get(store, key.as_ref()).await.as_ref(), b"first");
}

/// Copying onto a key that exists replaces it; copying onto a new key
/// creates it; the source stays.
pub async fn copy_over_an_existing_object(store: &dyn ObjectStore) {
    put(store, "contract/copy/staged", b"new generation").await;
    put(store, "contract/copy/final", b"old generation").await;
    let (from, to) = (
        Path::from("contract/copy/staged"),
        Path::from("contract/copy/final"),
    );
    store
        .copy(&from, &to)
        .await
        .expect("copy over an existing object");
    assert_eq!(
        get(store, "contract/copy/final").await.as_ref(),
        b"new generation"
    );
    // Again, as a rerun after a crash does.
    store.copy(&from, &to).await.expect("the same copy again");
    assert_eq!(
        get(store, "contract/copy/final").await.as_ref(),
        b"new generation"
    );
    let fresh = Path::from("contract/copy/elsewhere/fresh");
    store
        .copy(&from, &fresh)
        .await
        .expect("copy onto a new key");
    assert_eq!(get(store, fresh.as_ref()).await.as_ref(), b"new generation");
    assert_eq!(
        get(store, "contract/copy/staged").await.as_ref(),
        b"new generation"
    );
}

/// Deleting an object removes it; deleting it again (or any missing
/// object) is `Ok` or `NotFound`, never another error.
pub async fn delete_a_missing_object(store: &dyn ObjectStore) {
    put(store, "contract/delete/a", b"x").await;
    let key = Path::from("contract/delete/a");
    store.delete(&key).await.expect("delete");
    assert!(list(store, "contract/delete").await.is_empty());
    match store.get(&key).await {
        Err(object_store::Error::NotFound { .. }) => {}
        other => panic!("a deleted object must be NotFound: {:?}", other.map(|_| ())),
    }
    for missing in [key, Path::from("contract/delete/never/written")] {
        match store.delete(&missing).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => panic!("deleting missing {missing}: {e}"),
        }
    }
}

/// Listing under a prefix returns exactly the objects below it, whole path
/// segments only (`dt=1/hour=1` is not under `dt=1/hour=10`'s prefix and
/// vice versa); a prefix with nothing under it lists nothing, without an
/// error; listing by delimiter gives the next path segment.
pub async fn list_with_a_prefix(store: &dyn ObjectStore) {
    for key in [
        "contract/list/dt=1/hour=1/a.parquet",
        "contract/list/dt=1/hour=1/b.parquet",
        "contract/list/dt=1/hour=10/c.parquet",
        "contract/list/dt=2/hour=1/sub/d.parquet",
        "contract/listed-not/e.parquet",
    ] {
        put(store, key, b"x").await;
    }
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        list(store, "contract/list/dt=1/hour=1").await,
        set(&[
            "contract/list/dt=1/hour=1/a.parquet",
            "contract/list/dt=1/hour=1/b.parquet",
        ])
    );
    assert_eq!(list(store, "contract/list").await.len(), 4);
    assert_eq!(
        list(store, "contract/list/dt=2").await,
        set(&["contract/list/dt=2/hour=1/sub/d.parquet"])
    );
    assert!(list(store, "contract/list/dt=3").await.is_empty());
    assert!(list(store, "contract/nothing/here").await.is_empty());

    let by_delimiter = store
        .list_with_delimiter(Some(&Path::from("contract/list")))
        .await
        .expect("list with delimiter");
    let prefixes: BTreeSet<String> = by_delimiter
        .common_prefixes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(prefixes, set(&["contract/list/dt=1", "contract/list/dt=2"]));
    assert!(by_delimiter.objects.is_empty());
    let hours = store
        .list_with_delimiter(Some(&Path::from("contract/list/dt=1")))
        .await
        .expect("list with delimiter");
    let prefixes: BTreeSet<String> = hours
        .common_prefixes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        prefixes,
        set(&["contract/list/dt=1/hour=1", "contract/list/dt=1/hour=10"])
    );
}

/// A file streamed up in parts (as the compactor uploads its output) reads
/// back, streamed, byte for byte.
pub async fn streamed_upload_and_download(store: Arc<dyn ObjectStore>) {
    // Over the 5 MiB minimum part size, with a buffer below it: a multipart upload.
    let body: Vec<u8> = (0..6 * 1024 * 1024 + 123)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let key = Path::from("contract/upload/part-0000.parquet");
    let mut w = BufWriter::with_capacity(Arc::clone(&store), key.clone(), 5 * 1024 * 1024);
    for chunk in body.chunks(1024 * 1024) {
        w.write_all(chunk).await.expect("write");
    }
    w.shutdown().await.expect("complete the upload");
    let mut back = Vec::with_capacity(body.len());
    let mut stream = store.get(&key).await.expect("get").into_stream();
    while let Some(chunk) = stream.try_next().await.expect("read") {
        back.extend_from_slice(&chunk);
    }
    assert_eq!(back.len(), body.len());
    assert!(back == body, "the bytes read back differ");
    let meta = store.head(&key).await.expect("head");
    assert_eq!(meta.size, body.len() as u64);
}

/// The whole suite.
pub async fn run_all(store: Arc<dyn ObjectStore>) {
    create_only_writes(store.as_ref()).await;
    copy_over_an_existing_object(store.as_ref()).await;
    delete_a_missing_object(store.as_ref()).await;
    list_with_a_prefix(store.as_ref()).await;
    streamed_upload_and_download(store).await;
}
