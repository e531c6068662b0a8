//! The store contract (`horizon_e2e::store_contract`) on every store the
//! relay and the compactor run on: a local directory (opened as
//! `shared::store` opens it), the in-memory store, and S3 on moto.

use std::sync::Arc;

use horizon_e2e::servers::Moto;
use horizon_e2e::store_contract::run_all;
use horizon_shared::store::{S3Options, StoreLocation};
use object_store::memory::InMemory;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_directory_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("objects").display().to_string();
    let store = StoreLocation::parse(&url, &S3Options::default())
        .expect("location")
        .build()
        .expect("store");
    run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_store_keeps_the_contract() {
    run_all(Arc::new(InMemory::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_moto_keeps_the_contract() {
    let moto = Moto::start("telemetry").await;
    let opts = S3Options {
        region: "us-east-1".into(),
        endpoint: moto.url(),
        path_style: true,
        allow_http: true,
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
    };
    let store = StoreLocation::parse("s3://telemetry/fleet", &opts)
        .expect("location")
        .build()
        .expect("store");
    run_all(store).await;
}
