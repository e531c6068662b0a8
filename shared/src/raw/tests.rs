use std::sync::Mutex;

use arrow_schema::Schema;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::groups::{format_node_groups, grouped_properties};
use super::sort::{SortKey, sort_keys};
use super::*;
use crate::layout::Hour;
use crate::proto::{Label, MetricType};

#[test]
fn the_declared_order_is_the_one_objects_always_had() {
    // Objects written before the order had a name declared 1, 0, 3, 4.
    let idx: Vec<i32> = sorting_columns().iter().map(|c| c.column_idx).collect();
    assert_eq!(idx, [1, 0, 3, 4]);
    assert_eq!(column_indices(SORT_KEY).unwrap(), [1, 0, 3, 4]);
}

#[test]
fn encodes_one_sorted_object_per_hour() {
    let label = |v: &str| {
        vec![Label {
            key: "gpu".into(),
            value: v.into(),
        }]
    };
    let hour = 3_600_000_000_000i64 * 490_000;
    let p = |node: &str, metric: &str, gpu: &str, time: i64| RawPoint {
        node: node.into(),
        metric: metric.into(),
        labels: label(gpu),
        time,
        value: 1.0,
        received_at: time + 5,
        metric_type: MetricType::Gauge,
    };
    let points = [
        p("b", "m", "0", hour + 2),
        p("a", "m", "0", hour + 1),
        p("a", "l", "0", hour + 3_600_000_000_000),
        p("a", "m", "0", hour),
    ];
    let objects = encode_raw_objects(&points, "relay-1").unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0].0, Hour::of_nanos(hour));
    assert_eq!((objects[0].1, objects[1].1), (3, 1));
    let reader = SerializedFileReader::new(objects[0].2.clone()).unwrap();
    let meta = reader.metadata().file_metadata();
    let kv = meta.key_value_metadata().unwrap();
    assert_eq!(kv[0].key, SCHEMA_KEY);
    assert_eq!(kv[0].value.as_deref(), Some(SCHEMA_VERSION));
    let sorted = reader.metadata().row_group(0).sorting_columns().unwrap();
    assert_eq!(sorted, &sorting_columns());
    let batch =
        parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(objects[0].2.clone(), 1024)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
    check_schema(&batch.schema()).unwrap();
    let time = batch
        .column(4)
        .as_any()
        .downcast_ref::<arrow_array::TimestampNanosecondArray>()
        .unwrap();
    assert_eq!(time.values(), &[hour, hour + 1, hour + 2]);
}

#[test]
fn a_flush_puts_old_hours_in_one_late_object() {
    let h = 3_600_000_000_000i64 * 490_000;
    let p = |time: i64| RawPoint {
        node: "n".into(),
        metric: "m".into(),
        labels: Vec::new(),
        time,
        value: 1.0,
        received_at: h + 9,
        metric_type: MetricType::Unspecified,
    };
    let points: Vec<RawPoint> = [h, h - 1, h - 3_600_000_000_000 * 30, h + 3_600_000_000_000]
        .into_iter()
        .map(p)
        .collect();
    let rows = points
        .iter()
        .map(|p| RawRow {
            node: &p.node,
            metric: &p.metric,
            labels: &p.labels,
            series_id: 7,
            time: p.time,
            value: p.value,
            received_at: p.received_at,
            metric_type: p.metric_type,
        })
        .collect();
    let out = encode_flush(rows, "r", false, Some(Hour::of_nanos(h))).unwrap();
    let hours: Vec<(Hour, usize)> = out.hours.iter().map(|o| (o.0, o.1)).collect();
    assert_eq!(
        hours,
        [
            (Hour::of_nanos(h), 1),
            (Hour::of_nanos(h + 3_600_000_000_000), 1)
        ]
    );
    let (n, bytes) = out.late.unwrap();
    assert_eq!(n, 2, "both old hours in one object");
    let reader = SerializedFileReader::new(bytes).unwrap();
    assert!(reader.metadata().row_group(0).sorting_columns().is_none());
}

/// The encoder as it was: rows sorted by comparing strings, the batch
/// built row by row with [`build_raw_batch`].
fn reference_object(mut rows: Vec<RawRow<'_>>, relay: &str, zstd: bool) -> Bytes {
    rows.sort_by(|a, b| {
        a.metric
            .cmp(b.metric)
            .then_with(|| a.node.cmp(b.node))
            .then_with(|| a.series_id.cmp(&b.series_id))
            .then_with(|| a.time.cmp(&b.time))
    });
    let groups = group_by_node(&mut rows);
    let batch = build_raw_batch(rows.into_iter(), relay).unwrap();
    let mut buf = Vec::new();
    let props = grouped_properties(&raw_writer_properties(zstd));
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
    let mut offset = 0;
    for g in &groups {
        w.write(&batch.slice(offset, g.rows)).unwrap();
        offset += g.rows;
    }
    w.append_key_value_metadata(KeyValue::new(
        NODE_GROUPS_KEY.into(),
        format_node_groups(&groups),
    ));
    w.close().unwrap();
    Bytes::from(buf)
}

/// Keys of `rows` rows drawn from small ranges, so that runs, equal
/// series and equal keys all occur.
fn drawn_keys(rows: usize, hours: i64, metrics: u32, nodes: u32) -> Vec<SortKey> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut draw = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    (0..rows)
        .map(|_| {
            let hour = 1_800_000_000 + 3600 * draw(hours as u64) as i64;
            SortKey {
                hour: Hour::of_nanos(hour * 1_000_000_000),
                metric: draw(u64::from(metrics)) as u32,
                node: draw(u64::from(nodes)) as u32,
                series_id: draw(20) as i64 - 10,
                time: hour * 1_000_000_000 + draw(3) as i64,
            }
        })
        .collect()
}

#[test]
fn runs_sorted_apart_give_the_order_of_one_sort_of_the_whole_key() {
    // The counting sort by (hour, metric, node) with sorted runs, and
    // the whole sort it falls back to when runs would outnumber rows or
    // hours are more than 64.
    for (rows, hours, metrics, nodes) in [
        (20_000, 3, 5, 7),
        (20_000, 1, 1, 1),
        (1, 1, 1, 1),
        (0, 1, 1, 1),
        (50, 2, 3000, 3000),
        (5_000, 100, 2, 2),
    ] {
        let keys = drawn_keys(rows, hours, metrics, nodes);
        let mut want: Vec<(SortKey, u32)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i as u32))
            .collect();
        want.sort();
        // Each key carries its arrival index as its item.
        let keyed = keys.iter().enumerate().map(|(i, k)| (*k, i as u32));
        let (order, items) = sort_keys(keyed, metrics as usize, nodes as usize);
        let got: Vec<(SortKey, u32)> = order
            .iter()
            .map(|(k, at)| (*k, items[*at as usize]))
            .collect();
        assert_eq!(got, want, "{rows} rows, {hours} h, {metrics} m, {nodes} n");
    }
}

#[test]
fn objects_are_the_bytes_the_row_by_row_encoder_wrote() {
    // Names that sort otherwise than they first appear, equal names in
    // distinct memory, series with no labels: the string columns are
    // written from codes (`coded`), and must be what the Arrow writer
    // makes of the strings.
    let names = |v: &[&str]| -> Vec<String> { v.iter().map(|s| (*s).to_owned()).collect() };
    let nodes = names(&["n-b", "n-a", "n-c", "n-a", "m"]);
    let metrics = names(&["zeta", "alpha", "mid", "alpha"]);
    let labels: Vec<Vec<Label>> = (0..7)
        .map(|i| {
            (0..i % 3)
                .map(|k| Label {
                    key: format!("k{k}"),
                    value: format!("v{}", i * 7 % 5),
                })
                .collect()
        })
        .collect();
    same_bytes_as_the_row_by_row_encoder(&nodes, &metrics, &labels, false);

    // Many nodes and groups, and hundreds of label values, first seen
    // group after group: the dictionary's bit width grows from page to
    // page. Compressed with zstd.
    let nodes: Vec<String> = (0..64).map(|n| format!("node-{n}")).collect();
    let metrics: Vec<String> = (0..9).map(|m| format!("metric_{}", 9 - m)).collect();
    let labels: Vec<Vec<Label>> = (0..700)
        .map(|i| {
            (0..i % 4)
                .map(|k| Label {
                    key: format!("key{}", (i + k) % 5),
                    value: format!("value-{}", (i * 13 + k) % 450),
                })
                .collect()
        })
        .collect();
    same_bytes_as_the_row_by_row_encoder(&nodes, &metrics, &labels, true);

    // Every row with one label, then none: the levels of each page all
    // alike.
    for entries in [1, 0] {
        let labels: Vec<Vec<Label>> = (0..30)
            .map(|i| {
                (0..entries)
                    .map(|_| Label {
                        key: "gpu".into(),
                        value: format!("{i}"),
                    })
                    .collect()
            })
            .collect();
        same_bytes_as_the_row_by_row_encoder(&nodes, &metrics, &labels, false);
    }
}

/// The metric types the byte-for-byte test draws from.
const TYPES: [MetricType; 5] = [
    MetricType::Summary,
    MetricType::Unspecified,
    MetricType::Counter,
    MetricType::Histogram,
    MetricType::Gauge,
];

/// Encodes 20,000 rows in no order, with distinct keys (so the order is
/// total), of the given nodes, metrics and label sets drawn at random,
/// and checks the object is cut into node groups and is the bytes of
/// [`reference_object`].
fn same_bytes_as_the_row_by_row_encoder(
    nodes: &[String],
    metrics: &[String],
    labels: &[Vec<Label>],
    zstd: bool,
) {
    let hour = 3_600_000_000_000i64 * 490_000;
    let mut rows = Vec::new();
    let mut label_set = Vec::new();
    let mut x = 17u64;
    for i in 0..20_000u64 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let node = &nodes[(x >> 33) as usize % nodes.len()];
        let metric = &metrics[(x >> 40) as usize % metrics.len()];
        let l = (x >> 20) as usize % labels.len();
        label_set.push(l);
        rows.push(RawRow {
            node,
            metric,
            labels: &labels[l],
            series_id: l as i64 - 3,
            // Distinct per row: the key is total.
            time: hour + i as i64 * 1000 + (x >> 50) as i64 % 1000,
            value: (x >> 11) as f64,
            received_at: hour + (x >> 45) as i64,
            // Every type, first seen in another order than the column's
            // dictionary lists them.
            metric_type: TYPES[(x >> 28) as usize % TYPES.len()],
        });
    }
    let reference = reference_object(rows.clone(), "relay-7", zstd);
    // The labels coded from their text, from label sets (a slot per
    // series, as the relay keeps them), and from label sets renewed
    // after the rows were coded (so coded from the text again).
    let slots: Vec<LabelSlot> = labels.iter().map(|_| LabelSlot::default()).collect();
    let sets = Mutex::new(LabelSets::new());
    for how in ["text", "sets", "renewed sets"] {
        let row_sets = (how != "text").then(|| {
            let mut s = lock_sets(&sets);
            let generation = s.generation();
            let of_row = label_set
                .iter()
                .map(|&l| s.set_of(&slots[l], &labels[l]))
                .collect();
            if how == "renewed sets" {
                *s = LabelSets::new();
            }
            RowSets {
                sets: &sets,
                generation,
                of_row,
            }
        });
        let out = encode_flush_sets(rows.clone(), row_sets, "relay-7", zstd, None).unwrap();
        let case = format!("{how}, {} label sets, zstd {zstd}", labels.len());
        one_object_as_the_reference(&out, rows.len(), &reference, &case);
    }
}

fn one_object_as_the_reference(out: &FlushObjects, rows: usize, reference: &Bytes, how: &str) {
    assert_eq!(out.hours.len(), 1);
    assert_eq!(out.hours[0].1, rows);
    let kv = SerializedFileReader::new(out.hours[0].2.clone())
        .unwrap()
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let groups = kv.iter().find(|k| k.key == NODE_GROUPS_KEY);
    assert!(groups.is_some(), "cut into node groups: {kv:?}");
    assert!(
        out.hours[0].2 == *reference,
        "the object differs from the row-by-row encoder's (labels from {how})"
    );
}

#[test]
fn an_hours_object_has_a_page_per_node_group_in_every_column() {
    // Rows of 0 to 2 labels, then of none, then of one each (the
    // writer takes the map's levels otherwise when they are all alike).
    for shape in [3, 1, 2] {
        one_page_per_node_group(shape);
    }
}

/// An object of rows with `i % 3` labels (`shape` 3), none (1) or one
/// each (2), checked.
fn one_page_per_node_group(shape: usize) {
    let h = 3_600_000_000_000i64 * 490_000;
    let nodes: Vec<String> = (0..64).map(|n| format!("node-{n}")).collect();
    let points: Vec<RawPoint> = (0..20_000)
        .map(|i| RawPoint {
            node: nodes[i % 64].clone(),
            metric: format!("m{}", i % 3),
            labels: (0..[0, 0, 1, i % 3][shape])
                .map(|k| Label {
                    key: format!("k{k}"),
                    value: format!("v{}", i % 7),
                })
                .collect(),
            time: h + i as i64,
            value: i as f64,
            received_at: h,
            metric_type: TYPES[i % 5],
        })
        .collect();
    let objects = encode_raw_objects(&points, "r").unwrap();
    let bytes = objects[0].2.clone();
    let options = parquet::file::serialized_reader::ReadOptionsBuilder::new()
        .with_page_index()
        .build();
    let reader = SerializedFileReader::new_with_options(bytes.clone(), options).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.num_row_groups(), 1);
    assert!(meta.row_group(0).sorting_columns().is_none());
    let kv = meta.file_metadata().key_value_metadata().unwrap();
    let value = kv
        .iter()
        .find(|k| k.key == NODE_GROUPS_KEY)
        .and_then(|k| k.value.clone())
        .expect("node groups listed");
    let groups = parse_node_groups(&value, 20_000).expect("well formed");
    assert_eq!(groups.len(), 16, "20,000 rows of 64 nodes: 16 groups");
    // Every column, the map's keys and values among them, has a page
    // starting at each group's first row and no other.
    let starts: Vec<i64> = groups
        .iter()
        .scan(0i64, |at, g| {
            let s = *at;
            *at += g.rows as i64;
            Some(s)
        })
        .collect();
    let index = meta.page_index().expect("page index read");
    assert_eq!(meta.row_group(0).num_columns(), 10, "ten leaf columns");
    for c in 0..10 {
        let firsts: Vec<i64> = index
            .page_locations(0, c)
            .expect("offset index written")
            .iter()
            .map(|p| p.first_row_index)
            .collect();
        assert!(
            firsts == starts,
            "labels of shape {shape}, column {c}: pages at {:?}…, {} in all",
            &firsts[..firsts.len().min(20)],
            firsts.len()
        );
    }
    // The rows of each group: its nodes only, in key order.
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .with_batch_size(1 << 20)
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let strings = |c: usize| -> Vec<String> {
        use arrow_array::cast::AsArray;
        let d = batch
            .column(c)
            .as_dictionary::<arrow_array::types::Int32Type>();
        let v = d.values().as_string::<i32>();
        d.keys()
            .values()
            .iter()
            .map(|&k| v.value(k as usize).to_owned())
            .collect()
    };
    let (nodes, metrics) = (strings(0), strings(1));
    for (g, &start) in groups.iter().zip(&starts) {
        let start = start as usize;
        for r in start..start + g.rows {
            assert!(g.buckets.contains(&u32::from(node_bucket(&nodes[r]))));
            if r > start {
                assert!((&metrics[r - 1], &nodes[r - 1]) <= (&metrics[r], &nodes[r]));
            }
        }
    }
}

#[test]
fn small_objects_get_fewer_groups() {
    let row = |node: &'static str| RawRow {
        node,
        metric: "m",
        labels: &[],
        series_id: 1,
        time: 0,
        value: 0.0,
        received_at: 0,
        metric_type: MetricType::Counter,
    };
    let mut few = vec![row("a"); 100];
    assert_eq!(
        group_by_node(&mut few),
        [NodeGroup {
            buckets: 0..65536,
            rows: 100
        }]
    );
    let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    let mut some: Vec<RawRow<'_>> = (0..512)
        .map(|i| RawRow {
            node: &names[i % 100],
            ..row("")
        })
        .collect();
    let groups = group_by_node(&mut some);
    assert_eq!(groups.len(), 4, "512 rows: four groups of 128 on average");
    assert_eq!(groups.iter().map(|g| g.rows).sum::<usize>(), 512);
    let mut at = 0;
    for g in &groups {
        for r in &some[at..at + g.rows] {
            assert!(g.buckets.contains(&u32::from(node_bucket(r.node))));
        }
        at += g.rows;
    }
}

#[test]
fn group_lists_must_be_ordered_and_add_up_to_the_rows() {
    let g = |a: u32, b: u32, rows: usize| NodeGroup {
        buckets: a..b,
        rows,
    };
    assert_eq!(
        parse_node_groups("0-32768:5,32768-65536:7", 12),
        Some(vec![g(0, 32768, 5), g(32768, 65536, 7)])
    );
    assert_eq!(
        parse_node_groups(&format_node_groups(&[g(4096, 8192, 3)]), 3),
        Some(vec![g(4096, 8192, 3)])
    );
    assert_eq!(parse_node_groups("0-32768:5,32768-65536:7", 13), None);
    assert_eq!(parse_node_groups("32768-65536:7,0-32768:5", 12), None);
    assert_eq!(parse_node_groups("0-70000:1", 1), None);
    assert_eq!(parse_node_groups("5-5:1", 1), None);
    assert_eq!(parse_node_groups("0-2", 0), None);
    assert_eq!(parse_node_groups("0-1:18446744073709551615,1-2:1", 0), None);
    assert_eq!(parse_node_groups("x", 1), None);
}

#[test]
fn schema_check_names_the_column() {
    let ok = raw_schema();
    assert!(check_schema(&ok).is_ok());
    let other = Schema::new(vec![arrow_schema::Field::new(
        "x",
        arrow_schema::DataType::Int64,
        false,
    )]);
    assert!(
        check_schema(&other)
            .unwrap_err()
            .to_string()
            .contains("columns")
    );
}

#[test]
fn a_different_schema_is_named() {
    let s = Schema::new(vec![arrow_schema::Field::new(
        "x",
        arrow_schema::DataType::Int64,
        false,
    )]);
    assert_eq!(
        check_schema(&s).unwrap_err().to_string(),
        "1 columns, the raw schema has 9 (8 in version 1)"
    );
}
