use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use horizon_shared::proto::{Label, MetricType};
use horizon_shared::raw::metric_type_name;
use horizon_shared::schema::{RawRow, build_raw_batch};
use proptest::prelude::*;

use super::*;

/// (metric, node, series_id, time, received_at, relay, value)
type Row = (String, String, i64, i64, i64, String, f64);

fn dict_str(batch: &RecordBatch, name: &str, i: usize) -> String {
    let col = batch.column(batch.schema().index_of(name).unwrap());
    let d = col.as_dictionary::<Int32Type>();
    let k = d.keys().value(i) as usize;
    d.values().as_string::<i32>().value(k).to_owned()
}

/// A row's metric type: drawn from what tells copies of a point apart, so
/// that copies of one key differ in type too, and the kept copy's type
/// says which copy was kept (the type is not part of the key or of the
/// tie-breaks).
fn type_of(received_at: i64, relay: &str, value: f64) -> MetricType {
    const TYPES: [MetricType; 5] = [
        MetricType::Counter,
        MetricType::Gauge,
        MetricType::Histogram,
        MetricType::Summary,
        MetricType::Unspecified,
    ];
    let h = received_at as u64 ^ relay.len() as u64 ^ value.to_bits().rotate_left(7);
    TYPES[(h % 5) as usize]
}

/// The rows of `batches`, each checked to carry its own metric type
/// ([`type_of`]).
fn rows_of(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let s = b.schema();
        let series = b
            .column(s.index_of("series_id").unwrap())
            .as_primitive::<Int64Type>();
        let time = b
            .column(s.index_of("time").unwrap())
            .as_primitive::<TimestampNanosecondType>();
        let recv = b
            .column(s.index_of("received_at").unwrap())
            .as_primitive::<TimestampNanosecondType>();
        let value = b
            .column(s.index_of("value").unwrap())
            .as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((
                dict_str(b, "metric", i),
                dict_str(b, "node", i),
                series.value(i),
                time.value(i),
                recv.value(i),
                dict_str(b, "relay", i),
                value.value(i),
            ));
            let r = out.last().expect("just pushed");
            assert_eq!(
                dict_str(b, "metric_type", i),
                metric_type_name(type_of(r.4, &r.5, r.6)),
                "the type of {r:?}"
            );
        }
    }
    out
}

/// One batch per relay, rows in the given order.
fn batches_of(rows: &[Row]) -> Vec<RecordBatch> {
    let mut by_relay: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_relay.entry(r.5.as_str()).or_default().push(r);
    }
    let labels: Vec<Label> = Vec::new();
    by_relay
        .into_iter()
        .map(|(relay, rows)| {
            build_raw_batch(
                rows.into_iter().map(|r| RawRow {
                    node: &r.1,
                    metric: &r.0,
                    labels: &labels,
                    series_id: r.2,
                    time: r.3,
                    value: r.6,
                    received_at: r.4,
                    metric_type: type_of(r.4, &r.5, r.6),
                }),
                relay,
            )
            .unwrap()
        })
        .collect()
}

/// The documented rule, written independently: per key, the least
/// (received_at, relay, value), the first received; output in key order.
fn model(rows: &[Row]) -> Vec<Row> {
    let mut best: BTreeMap<(String, String, i64, i64), Row> = BTreeMap::new();
    for r in rows {
        let k = (r.0.clone(), r.1.clone(), r.2, r.3);
        let better = match best.get(&k) {
            None => true,
            Some(b) => {
                (r.4, &r.5, r.6).partial_cmp(&(b.4, &b.5, b.6)) == Some(std::cmp::Ordering::Less)
            }
        };
        if better {
            best.insert(k, r.clone());
        }
    }
    best.into_values().collect()
}

fn row_strategy() -> impl Strategy<Value = Row> {
    (
        prop::sample::select(vec!["gpu_temp", "gpu_util", "a"]),
        prop::sample::select(vec!["node-1", "node-2", "n"]),
        prop::sample::select(vec![i64::MIN, -7, 0, 3, i64::MAX]),
        0i64..4,
        0i64..3,
        prop::sample::select(vec!["relay-a", "relay-b"]),
        prop::sample::select(vec![-1.5, 0.0, 2.0, 7.25]),
    )
        .prop_map(|(m, n, s, t, r, relay, v)| (m.into(), n.into(), s, t, r, relay.into(), v))
}

/// Sorts `rows` in `chunks` runs, then merges them: the rows kept, the
/// merge's counts and the conflicts counted by both steps.
fn run_pipeline(rows: &[Row], chunks: usize) -> (Vec<Row>, Counts) {
    let (got, counts, _) = run_pipeline_counting(rows, chunks);
    (got, counts)
}

fn run_pipeline_counting(rows: &[Row], chunks: usize) -> (Vec<Row>, Counts, u64) {
    let orderer = Orderer::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut sources: Vec<Source> = Vec::new();
    let mut conflicts = 0;
    let per = rows.len().div_ceil(chunks.max(1)).max(1);
    for (i, chunk) in rows.chunks(per).enumerate() {
        let mut out = OutputFiles::new(
            dir.path(),
            &format!("run-{i}"),
            spill_properties(),
            u64::MAX,
        );
        let sorted = sort_dedup(&orderer, &batches_of(chunk), |b| out.write(&b)).unwrap();
        conflicts += sorted.value_conflicts;
        for f in out.finish().unwrap() {
            sources.push(open_source(&f.path).unwrap());
        }
    }
    let mut out = Vec::new();
    let counts = merge(&orderer, sources, |b| {
        out.push(b);
        Ok(())
    })
    .unwrap();
    let conflicts = conflicts + counts.value_conflicts;
    (rows_of(&out), counts, conflicts)
}

proptest! {
    #[test]
    fn sort_spill_merge_matches_the_rule(rows in prop::collection::vec(row_strategy(), 0..300), chunks in 1usize..6) {
        let (got, counts) = run_pipeline(&rows, chunks);
        let want = model(&rows);
        prop_assert_eq!(counts.rows_out as usize, want.len());
        prop_assert_eq!(got, want);
    }

    #[test]
    fn value_conflicts_are_counted_when_and_only_when_copies_disagree(rows in prop::collection::vec(row_strategy(), 0..300), chunks in 1usize..6) {
        // However the rows are cut into runs: no conflict counted where
        // every key's copies share one value; at least one per key whose
        // copies do not, and never more than the copies dropped.
        let (_, counts, conflicts) = run_pipeline_counting(&rows, chunks);
        let mut values: BTreeMap<(String, String, i64, i64), Vec<u64>> = BTreeMap::new();
        for r in &rows {
            values.entry((r.0.clone(), r.1.clone(), r.2, r.3)).or_default().push(r.6.to_bits());
        }
        let disagreeing = values
            .into_values()
            .filter(|v| v.iter().any(|&x| x != v[0]))
            .count() as u64;
        let dropped = rows.len() as u64 - counts.rows_out;
        prop_assert!(conflicts >= disagreeing, "{} < {}", conflicts, disagreeing);
        prop_assert!(conflicts <= dropped, "{} > {}", conflicts, dropped);
        prop_assert_eq!(conflicts == 0, disagreeing == 0);
    }
}

#[test]
fn merge_spans_many_output_batches() {
    // More rows than one output batch, across three sources with overlaps.
    let mut rows = Vec::new();
    for t in 0..(BATCH_ROWS as i64 * 2 + 17) {
        for (relay, recv) in [("relay-a", 1), ("relay-b", 2)] {
            rows.push((
                "m".to_owned(),
                "n".to_owned(),
                1,
                t,
                recv,
                relay.to_owned(),
                t as f64,
            ));
        }
    }
    let (got, counts) = run_pipeline(&rows, 3);
    assert_eq!(counts.rows_out as usize, BATCH_ROWS * 2 + 17);
    assert_eq!(got.len(), BATCH_ROWS * 2 + 17);
    assert!(
        got.iter().all(|r| r.5 == "relay-a" && r.4 == 1),
        "the first receipt wins"
    );
    assert_eq!(got, model(&rows));
}

#[test]
fn copies_with_another_value_than_the_kept_one_are_counted_as_conflicts() {
    let row = |recv: i64, relay: &str, v: f64| -> Row {
        ("m".into(), "n".into(), 1, 7, recv, relay.into(), v)
    };
    // The first receipt (1.0 at 10) is kept: a resend of the same value is
    // a duplicate, each copy of another value a conflict too.
    let rows = vec![
        row(10, "relay-a", 1.0),
        row(20, "relay-b", 1.0),
        row(30, "relay-b", 2.0),
        row(40, "relay-a", f64::NAN),
        row(50, "relay-a", 1.0),
    ];
    let orderer = Orderer::new().unwrap();
    let mut kept = Vec::new();
    let sorted = sort_dedup(&orderer, &batches_of(&rows), |b| {
        kept.push(b);
        Ok(())
    })
    .unwrap();
    assert_eq!((sorted.rows_in, sorted.rows_out), (5, 1));
    assert_eq!((sorted.duplicates(), sorted.value_conflicts), (4, 2));
    assert_eq!(rows_of(&kept), vec![row(10, "relay-a", 1.0)]);
    // The same copies one per run: the k-way merge counts the same.
    let (got, merged) = run_pipeline(&rows, rows.len());
    assert_eq!(got, vec![row(10, "relay-a", 1.0)]);
    assert_eq!((merged.duplicates(), merged.value_conflicts), (4, 2));
}

#[test]
fn shards_partition_nodes() {
    let rows: Vec<Row> = (0..50)
        .map(|i| ("m".into(), format!("node-{i}"), 1, 0, 0, "r".into(), 0.0))
        .collect();
    let batch = &batches_of(&rows)[0];
    let mut seen = 0;
    for s in 0..3 {
        let part = filter_shard(batch, s, 3).unwrap();
        for r in rows_of(std::slice::from_ref(&part)) {
            assert_eq!(shard_of(&r.1, 3), s);
        }
        seen += part.num_rows();
    }
    assert_eq!(seen, 50);
}

#[test]
fn a_power_of_two_shard_is_one_range_of_node_buckets() {
    use horizon_shared::raw::node_bucket;
    for shards in [1u32, 2, 4, 8, 16, 32, 64, 1024] {
        let ranges: Vec<_> = (0..shards)
            .map(|s| shard_buckets(s, shards).expect("a power of two"))
            .collect();
        assert_eq!(
            ranges.iter().map(|r| r.len()).sum::<usize>(),
            1 << 16,
            "{shards}: the ranges cover every bucket"
        );
        for i in 0..2000 {
            let node = format!("gpu-node-{i:05}");
            let s = shard_of(&node, shards);
            assert!(
                ranges[s as usize].contains(&u32::from(node_bucket(&node))),
                "{node} in shard {s} of {shards}"
            );
        }
    }
    assert_eq!(shard_buckets(0, 3), None);
    assert_eq!(shard_buckets(4, 4), None);
}

#[test]
fn a_committed_file_of_schema_version_1_merges_with_version_2_runs() {
    use horizon_shared::raw::{raw_schema, raw_schema_v1};
    use parquet::arrow::ArrowWriter;
    let row = |t: i64, recv: i64, relay: &str| -> Row {
        ("m".into(), "n".into(), 1, t, recv, relay.into(), t as f64)
    };
    // A file a compactor before version 2 wrote: the first eight columns.
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<Row> = (0..4).map(|t| row(t, 5, "relay-a")).collect();
    let v1 = batches_of(&old)[0]
        .project(&(0..raw_schema_v1().fields().len()).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(v1.schema().fields(), raw_schema_v1().fields());
    let path = dir.path().join("committed.parquet");
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        v1.schema(),
        Some(output_properties(1024)),
    )
    .unwrap();
    w.write(&v1).unwrap();
    w.close().unwrap();
    // New rows: t = 2 and 3 received earlier (they win), t = 4 and 5 new.
    let new: Vec<Row> = (2..6).map(|t| row(t, 1, "relay-b")).collect();
    let mut run = OutputFiles::new(dir.path(), "run", spill_properties(), u64::MAX);
    for b in batches_of(&new) {
        run.write(&b).unwrap();
    }
    let mut sources = vec![open_source(&path).unwrap()];
    for f in run.finish().unwrap() {
        sources.push(open_source(&f.path).unwrap());
    }
    let mut out = Vec::new();
    merge(&Orderer::new().unwrap(), sources, |b| {
        out.push(b);
        Ok(())
    })
    .unwrap();
    assert!(out.iter().all(|b| b.schema() == raw_schema()));
    let types: Vec<(i64, String)> = out
        .iter()
        .flat_map(|b| {
            let time = b
                .column(b.schema().index_of("time").unwrap())
                .as_primitive::<TimestampNanosecondType>()
                .clone();
            (0..b.num_rows()).map(move |i| (time.value(i), dict_str(b, "metric_type", i)))
        })
        .collect();
    let want: Vec<(i64, String)> = (0..6)
        .map(|t| {
            let name = if t < 2 {
                "unknown"
            } else {
                metric_type_name(type_of(1, "relay-b", t as f64))
            };
            (t, name.to_owned())
        })
        .collect();
    assert_eq!(
        types, want,
        "the old file's rows unknown, the new ones typed"
    );
}
