use horizon_shared::proto::MetricType;
use horizon_shared::raw::{RawRow, build_raw_batch, raw_schema_v1};
use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;

use super::*;

/// Rows of metric `m`, node `n`, series 1: (time, received_at, value).
fn batch(rows: &[(i64, i64, f64)], relay: &str, metric_type: MetricType) -> RecordBatch {
    build_raw_batch(
        rows.iter().map(|&(time, received_at, value)| RawRow {
            node: "n",
            metric: "m",
            labels: &[],
            series_id: 1,
            time,
            value,
            received_at,
            metric_type,
        }),
        relay,
    )
    .unwrap()
}

/// `batch` written as a compacted file (row groups of 4 rows, with
/// statistics) at `key`; returns its size.
async fn put(store: &Arc<dyn ObjectStore>, key: &Path, batch: &RecordBatch) -> u64 {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(
        &mut buf,
        batch.schema(),
        Some(crate::merge::output_properties(4)),
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    let size = buf.len() as u64;
    store.put(key, PutPayload::from(buf)).await.unwrap();
    size
}

#[tokio::test]
async fn a_committed_file_of_either_schema_version_is_probed_alike() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // Committed: times 0 to 11, received at 5 by relay-a, value = time.
    let rows: Vec<(i64, i64, f64)> = (0..12).map(|t| (t, 5, t as f64)).collect();
    let v2 = batch(&rows, "relay-a", MetricType::Gauge);
    let v1 = v2
        .project(&(0..raw_schema_v1().fields().len()).collect::<Vec<_>>())
        .unwrap();
    // Late, sorted by key: time 3 received earlier (wins), time 7 received
    // later with another value (loses, a conflict), time 20 new.
    let late = batch(
        &[(3, 1, 3.0), (7, 9, 70.0), (20, 1, 20.0)],
        "relay-b",
        MetricType::Counter,
    );
    let keys = Arc::new(LateKeys::new(&late).unwrap());
    let want = vec![
        Hit {
            late: 0,
            wins: true,
            conflict: false,
        },
        Hit {
            late: 1,
            wins: false,
            conflict: true,
        },
    ];
    for (name, committed) in [("v1", v1), ("v2", v2)] {
        let key = Path::from(format!("compacted/{name}.parquet"));
        let size = put(&store, &key, &committed).await;
        let p = probe(&store, &key, size, &keys).await.unwrap();
        assert_eq!(p.hits, want, "a committed file of schema {name}");
        assert!(
            p.row_groups_read < 3,
            "{name}: row groups pruned by statistics"
        );
    }
}
