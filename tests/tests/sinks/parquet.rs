//! Parquet objects on a local directory and on S3 (moto), read back by pyarrow; micro-batch flushing.

use super::*;

fn check_files(files: &[serde_json::Value], codec: &str) {
    assert!(!files.is_empty());
    let mut partitions = BTreeSet::new();
    for f in files {
        let path = f["path"].as_str().unwrap();
        assert!(path.contains("raw/dt="), "{path}");
        assert_eq!(f["codecs"], serde_json::json!([codec]), "{path}");
        assert_eq!(
            f["sorted"], true,
            "{path} rows sorted by metric, node, series, time"
        );
        assert_eq!(f["hours_ok"], true, "{path} rows in the partition's hour");
        assert_eq!(f["schema_version"], "2");
        partitions.insert(path.rsplit_once('/').unwrap().0.to_owned());
    }
    assert!(
        partitions.len() >= 2,
        "points of two hours land in two partitions: {partitions:?}"
    );
}

#[tokio::test]
async fn parquet_on_a_local_directory_holds_exactly_the_acked_points() {
    let relay = TestRelay::start("").await;
    let client = relay.client("gpu-node-7").await;
    let expected = send_points(&client, "gpu-node-7", 50).await;
    let data = read_parquet(&["local", relay.objects.to_str().unwrap()]);
    check_files(&data.files, "SNAPPY");
    assert_same(&from_parquet(&data.rows), &sorted(expected), false);
    // The typed series' rows carry its type, the others `unknown`.
    for r in &data.rows {
        let want = match r["metric"].as_str().unwrap() {
            "gpu_temperature_celsius" => "gauge",
            _ => "unknown",
        };
        assert_eq!(r["metric_type"], want, "{r}");
    }
    let m = relay.scrape().await;
    assert_eq!(m.get("horizon_relay_points_written_total"), 132.0);
    assert!(m.get("horizon_relay_s3_objects_written_total") >= 2.0);
    // The new name and the deprecated one export the same counter.
    assert_eq!(
        m.get("horizon_relay_objects_written_total"),
        m.get("horizon_relay_s3_objects_written_total")
    );
    client.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn parquet_on_s3_is_read_back_by_pyarrow() {
    let moto = Moto::start("telemetry").await;
    let relay = TestRelay::start(
        &(s3_yaml(&moto.url(), "telemetry", "") + "parquet:\n  compression: zstd\n"),
    )
    .await;
    let client = relay.client("gpu-node-9").await;
    let expected = send_points(&client, "gpu-node-9", 40).await;
    let data = read_parquet(&["s3", &moto.addr.to_string(), "telemetry", "fleet-a"]);
    check_files(&data.files, "ZSTD");
    assert_same(&from_parquet(&data.rows), &sorted(expected), false);
    client.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn micro_batches_flush_on_rows_and_on_bytes_before_their_age() {
    for (what, yaml) in [
        (
            "rows",
            "parquet:\n  rotation_interval_secs: 600\n  flush_rows: 100\n",
        ),
        (
            "bytes",
            "parquet:\n  rotation_interval_secs: 600\n  flush_bytes: 10000\n",
        ),
    ] {
        let relay = TestRelay::start(yaml).await;
        let client = relay.client("gpu-node-4").await;
        let s = client
            .series(
                "gpu_memory_used_bytes",
                &[("gpu", "0"), ("uuid", "GPU-0b3f")],
            )
            .unwrap();
        // 150 points: over 100 rows, and over 10,000 estimated bytes (about 100 bytes a row).
        let ack = tokio::time::timeout(
            Duration::from_secs(30),
            client
                .send(Batch {
                    points: (0..150).map(|i| Point::now(s, f64::from(i))).collect(),
                })
                .await
                .unwrap(),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: no flush before the 600 s age"))
        .unwrap();
        assert_eq!(ack.ack.durability, Durability::Durable as i32, "{what}");
        assert_eq!(
            read_parquet(&["local", relay.objects.to_str().unwrap()])
                .rows
                .len(),
            150,
            "{what}"
        );
        client.close().await;
        relay.stop().await;
    }
}

/// A relay built with a given store (here in memory, no server): the same
/// points, copied out of the store and read back by pyarrow.
#[tokio::test]
async fn parquet_in_a_given_in_memory_store_holds_exactly_the_acked_points() {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};

    let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    let relay = TestRelay::start_with_store("", store.clone()).await;
    let configured_dir = relay.objects.clone();
    let client = relay.client("gpu-node-7").await;
    let expected = send_points(&client, "gpu-node-7", 50).await;
    client.close().await;
    relay.stop().await;

    let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert!(
        objects.len() >= 2,
        "one object per hour at least: {objects:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    for meta in &objects {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let path = dir.path().join(meta.location.as_ref());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
    }
    let data = read_parquet(&["local", dir.path().to_str().unwrap()]);
    check_files(&data.files, "SNAPPY");
    assert_same(&from_parquet(&data.rows), &sorted(expected), false);
    assert!(
        !configured_dir.exists(),
        "nothing went to the configured local directory"
    );
}

/// A replay: one batch with a point in each of 150 past hours, plus the
/// current hour. The flush writes one late object for all the old hours
/// (not one object per hour) and the hour's own object; every point is
/// stored once.
#[tokio::test]
async fn a_flush_of_many_past_hours_writes_a_bounded_number_of_objects() {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};

    let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    let relay = TestRelay::start_with_store("", store.clone()).await;
    let client = relay.client("gpu-node-9").await;
    let s = client.series("gpu_power_watts", &[("gpu", "1")]).unwrap();
    let now = unix_nanos_now();
    let hour = 3_600_000_000_000;
    let mut points: Vec<Point> = (2..152)
        .map(|h| Point::new(s, now - h * hour, h as f64))
        .collect();
    points.push(Point::new(s, now, -1.0));
    let sent = points.len();
    let ack = client.send(Batch { points }).await.unwrap().await.unwrap();
    assert_eq!(ack.ack.accepted as usize, sent, "{ack:?}");
    client.close().await;
    relay.stop().await;

    let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
    let late: Vec<_> = objects
        .iter()
        .filter(|m| m.location.as_ref().starts_with("raw/_late/"))
        .collect();
    assert_eq!(late.len(), 1, "one late object: {objects:?}");
    assert!(
        objects.len() <= 2,
        "the late object and the current hour's: {objects:?}"
    );
    // Read back by pyarrow (which, like query engines, skips `_` folders:
    // the late object is copied out under another name).
    let dir = tempfile::tempdir().unwrap();
    for meta in &objects {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let path = dir
            .path()
            .join(meta.location.as_ref().replace("/_late/", "/late/"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
    }
    let data = read_parquet(&["local", dir.path().to_str().unwrap()]);
    let mut values: Vec<i64> = data
        .rows
        .iter()
        .map(|r| r["value"].as_f64().unwrap() as i64)
        .collect();
    values.sort_unstable();
    let mut want: Vec<i64> = (2..152).collect();
    want.push(-1);
    want.sort_unstable();
    assert_eq!(values, want, "every point stored once");
}
