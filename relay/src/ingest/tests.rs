use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::BudgetSettings;
use horizon_shared::proto::{Label, SeriesDef};

const NOW: i64 = 1_800_000_000_000_000_000;

fn budgets(per_node: usize) -> Budgets {
    Budgets::new(BudgetSettings {
        max_series_per_node: per_node,
        max_series_per_metric: None,
        max_series_total: 1_000_000,
        series_ttl: Duration::from_secs(600),
        metrics_top_nodes: 20,
        overrides: BTreeMap::new(),
    })
}

fn limits() -> IngestLimits {
    IngestLimits {
        max_batch_size: 100,
        series: SeriesLimits::default(),
        time_window: TimeWindow {
            max_age_ns: 3600 * 1_000_000_000,
            max_future_ns: 600 * 1_000_000_000,
        },
    }
}

fn def(id: u32, metric: &str, labels: &[(&str, &str)]) -> SeriesDef {
    SeriesDef {
        id,
        metric: metric.into(),
        labels: labels
            .iter()
            .map(|(k, v)| Label {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
        metric_type: 0,
    }
}

fn batch(defs: Vec<SeriesDef>, points: &[(u32, i64, f64)]) -> MetricBatch {
    let mut prev = NOW;
    MetricBatch {
        sequence: 42,
        series_defs: defs,
        series_ids: points.iter().map(|p| p.0).collect(),
        base_time_unix_nano: NOW,
        time_deltas: points
            .iter()
            .map(|p| {
                let d = p.1 - prev;
                prev = p.1;
                d
            })
            .collect(),
        values: points.iter().map(|p| p.2).collect(),
    }
}

fn run(b: &Budgets, dict: &mut StreamDictionary, mb: MetricBatch) -> BatchOutcome {
    let node = b.node("node-1");
    process_batch(mb, dict, b, &node, &limits(), NOW, 0)
}

fn reasons(ack: &BatchAck) -> Vec<(RejectReason, u32)> {
    ack.rejections
        .iter()
        .map(|r| (RejectReason::try_from(r.reason).unwrap(), r.count))
        .collect()
}

#[test]
fn valid_batch_is_accepted_with_absolute_times_and_canonical_labels() {
    let b = budgets(100);
    let mut d = StreamDictionary::new(1000);
    let out = run(
        &b,
        &mut d,
        batch(
            vec![def(0, "gpu_util", &[("uuid", "U"), ("gpu", "0")])],
            &[(0, NOW, 1.0), (0, NOW + 5, 2.0)],
        ),
    );
    assert_eq!(
        (out.ack.sequence, out.ack.accepted, out.ack.rejected),
        (42, 2, 0)
    );
    assert!(out.ack.rejections.is_empty());
    assert_eq!(out.accepted[1].time_unix_nano, NOW + 5);
    assert_eq!(out.accepted[0].series.labels[0].key, "gpu");
    assert_eq!(out.new_series, 1);
    // The definition persists for later batches on the stream.
    let out = run(&b, &mut d, batch(vec![], &[(0, NOW + 10, 3.0)]));
    assert_eq!(out.ack.accepted, 1);
    assert_eq!(out.new_series, 0);
}

#[test]
fn every_kind_of_bad_point_is_rejected_as_invalid_and_the_rest_flows() {
    let b = budgets(100);
    let mut d = StreamDictionary::new(1000);
    let huge: Vec<(String, String)> = (0..40).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let huge: Vec<(&str, &str)> = huge.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let defs = vec![
        def(0, "ok", &[]),
        def(1, "", &[]),
        def(2, "m", &[("node", "someone-else")]),
        def(3, "m", &huge),
        def(4, "m", &[("a", "line\nbreak")]),
        def(5000, "beyond", &[]),
    ];
    let pts = [
        (0, NOW, 1.0),
        (0, NOW, f64::NAN),
        (0, NOW, f64::INFINITY),
        (0, NOW + 3_600_000_000_000_000, 1.0), // 1000 hours ahead
        (0, 0, 1.0),                           // 1970
        (1, NOW, 1.0),
        (2, NOW, 1.0),
        (3, NOW, 1.0),
        (4, NOW, 1.0),
        (9, NOW, 1.0), // never defined
        (5000, NOW, 1.0),
        (0, NOW, 2.0),
    ];
    let out = run(&b, &mut d, batch(defs, &pts));
    assert_eq!(out.ack.accepted, 2);
    assert_eq!(out.ack.rejected, 10);
    assert_eq!(reasons(&out.ack), vec![(RejectReason::Invalid, 10)]);
    assert!(!out.ack.rejections[0].message.is_empty());
    assert_eq!(out.bad_defs, 1);
}

#[test]
fn timestamp_overflow_is_invalid_not_a_panic() {
    let b = budgets(100);
    let mut d = StreamDictionary::new(10);
    let mut mb = batch(vec![def(0, "m", &[])], &[(0, NOW, 1.0), (0, NOW, 1.0)]);
    mb.base_time_unix_nano = i64::MAX - 1;
    mb.time_deltas = vec![0, i64::MAX];
    let out = run(&b, &mut d, mb);
    assert_eq!((out.ack.accepted, out.ack.rejected), (0, 2));
}

#[test]
fn whole_batch_errors() {
    let b = budgets(100);
    let mut d = StreamDictionary::new(10);
    let big: Vec<_> = (0..101).map(|_| (0, NOW, 1.0)).collect();
    let out = run(&b, &mut d, batch(vec![def(0, "m", &[])], &big));
    assert_eq!(reasons(&out.ack), vec![(RejectReason::TooLarge, 101)]);
    assert_eq!(out.ack.rejected, 101);
    // The definitions of a refused batch still count for the stream.
    let out = run(&b, &mut d, batch(vec![], &[(0, NOW, 1.0)]));
    assert_eq!(out.ack.accepted, 1);

    let mut mb = batch(vec![], &[(0, NOW, 1.0), (0, NOW, 2.0)]);
    mb.values.pop();
    let out = run(&b, &mut d, mb);
    assert_eq!(reasons(&out.ack), vec![(RejectReason::Invalid, 2)]);
    assert!(out.ack.rejections[0].message.contains("differ"));
}

#[test]
fn cardinality_rejections_are_reported_in_the_ack() {
    let b = budgets(2);
    let mut d = StreamDictionary::new(10);
    let defs = (0..4)
        .map(|i| def(i, "gpu_util", &[("gpu", &i.to_string())]))
        .collect();
    let out = run(
        &b,
        &mut d,
        batch(
            defs,
            &[
                (0, NOW, 1.0),
                (1, NOW, 1.0),
                (2, NOW, 1.0),
                (3, NOW, 1.0),
                (0, NOW + 1, 1.0),
            ],
        ),
    );
    assert_eq!((out.ack.accepted, out.ack.rejected), (3, 2));
    assert_eq!(reasons(&out.ack), vec![(RejectReason::Cardinality, 2)]);
    let msg = &out.ack.rejections[0].message;
    assert!(
        msg.contains("node-1") && msg.contains("gpu_util") && msg.contains("2/2"),
        "{msg}"
    );
    assert_eq!(out.rejects.cardinality_node, 2);
}

#[test]
fn the_same_series_defined_in_two_streams_is_one_series() {
    let b = budgets(1);
    let mut d1 = StreamDictionary::new(10);
    let mut d2 = StreamDictionary::new(10);
    run(
        &b,
        &mut d1,
        batch(
            vec![def(0, "m", &[("a", "1"), ("b", "2")])],
            &[(0, NOW, 1.0)],
        ),
    );
    let out = run(
        &b,
        &mut d2,
        batch(
            vec![def(7, "m", &[("b", "2"), ("a", "1")])],
            &[(7, NOW, 1.0)],
        ),
    );
    assert_eq!(
        out.ack.accepted, 1,
        "label order does not make a new series"
    );
}

#[test]
fn a_definitions_type_is_kept_and_is_not_part_of_the_series() {
    use horizon_shared::proto::MetricType;
    let b = budgets(1);
    let mut d = StreamDictionary::new(10);
    let typed = |id, t: MetricType| SeriesDef {
        metric_type: t.into(),
        ..def(id, "gpu_energy_joules_total", &[("gpu", "0")])
    };
    // A later revision's type, which this relay does not know.
    let later = SeriesDef {
        metric_type: 42,
        ..def(2, "gpu_energy_joules_total", &[("gpu", "0")])
    };
    let out = run(
        &b,
        &mut d,
        batch(
            vec![
                typed(0, MetricType::Counter),
                def(1, "gpu_energy_joules_total", &[("gpu", "0")]),
                later,
            ],
            &[(0, NOW, 1.0), (1, NOW + 1, 2.0), (2, NOW + 2, 3.0)],
        ),
    );
    assert_eq!(out.ack.accepted, 3);
    let types: Vec<MetricType> = out.accepted.iter().map(|p| p.series.metric_type).collect();
    assert_eq!(
        types,
        [
            MetricType::Counter,
            MetricType::Unspecified,
            MetricType::Unspecified
        ]
    );
    // One series: the same hash, one series of the node's budget of one.
    let hashes: Vec<u64> = out.accepted.iter().map(|p| p.series.series_hash).collect();
    assert_eq!(hashes, [hashes[0]; 3]);
    assert_eq!(out.new_series, 1);
    // Redefining the id with another type replaces the binding's type.
    let out = run(
        &b,
        &mut d,
        batch(vec![typed(0, MetricType::Gauge)], &[(0, NOW + 3, 4.0)]),
    );
    assert_eq!(out.accepted[0].series.metric_type, MetricType::Gauge);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn arb_def() -> impl Strategy<Value = SeriesDef> {
        (
            0u32..20,
            "[a-z_ \n]{0,12}",
            proptest::collection::vec(("[a-z_]{0,6}", "[a-z0-9 ,=]{0,6}"), 0..4),
        )
            .prop_map(|(id, metric, labels)| SeriesDef {
                id,
                metric,
                labels: labels
                    .into_iter()
                    .map(|(key, value)| Label { key, value })
                    .collect(),
                metric_type: 0,
            })
    }

    fn arb_batch() -> impl Strategy<Value = MetricBatch> {
        (
            proptest::collection::vec(arb_def(), 0..6),
            proptest::collection::vec(0u32..24, 0..40),
            proptest::collection::vec(any::<i64>(), 0..40),
            proptest::collection::vec(any::<f64>(), 0..40),
            prop_oneof![Just(NOW), any::<i64>()],
        )
            .prop_map(
                |(series_defs, series_ids, time_deltas, values, base)| MetricBatch {
                    sequence: 7,
                    series_defs,
                    series_ids,
                    base_time_unix_nano: base,
                    time_deltas,
                    values,
                },
            )
    }

    proptest! {
        /// Any batch is answered, never panics, and the ack adds up:
        /// accepted + rejected = points, per-reason counts sum to rejected,
        /// and every accepted point is finite and inside the time window.
        #[test]
        fn any_batch_gets_a_consistent_ack(batches in proptest::collection::vec(arb_batch(), 1..4)) {
            let b = budgets(5);
            let mut d = StreamDictionary::new(16);
            for mb in batches {
                let n = mb.series_ids.len().max(mb.time_deltas.len()).max(mb.values.len()) as u32;
                let out = run(&b, &mut d, mb);
                prop_assert_eq!(out.ack.accepted + out.ack.rejected, n);
                prop_assert_eq!(out.ack.rejections.iter().map(|r| r.count).sum::<u32>(), out.ack.rejected);
                prop_assert_eq!(out.accepted.len() as u32, out.ack.accepted);
                let (min, max) = limits().time_window.bounds(NOW);
                for p in &out.accepted {
                    prop_assert!(p.value.is_finite());
                    prop_assert!(p.time_unix_nano >= min && p.time_unix_nano <= max);
                }
            }
            prop_assert!(b.total() <= 5);
        }
    }
}

/// An ordinary GPU node: 100 GPUs, 60 series each, labels like an exporter's.
fn ordinary_node_defs() -> Vec<SeriesDef> {
    let mut defs = Vec::new();
    for gpu in 0..100u32 {
        let uuid = format!("GPU-{gpu:08x}-3c2e-4f1a-9b7d-52e1c0a4d9f{}", gpu % 10);
        let gpu_s = gpu.to_string();
        for m in 0..60u32 {
            let metric = format!("dcgm_fi_dev_metric_number_{m:02}");
            defs.push(def(
                gpu * 60 + m,
                &metric,
                &[
                    ("gpu", &gpu_s),
                    ("uuid", &uuid),
                    ("model", "NVIDIA H100 80GB HBM3"),
                    ("pci_bus_id", "00000000:18:00.0"),
                    ("job", "train-llm-7b"),
                ],
            ));
        }
    }
    defs
}

#[test]
fn an_ordinary_node_uses_a_small_part_of_the_dictionary_bounds() {
    let b = budgets(10_000);
    let mut d = StreamDictionary::new(65_536);
    let out = run(&b, &mut d, batch(ordinary_node_defs(), &[]));
    assert_eq!((out.bad_defs, out.refused_defs), (0, 0));
    let bytes = d.bytes();
    println!(
        "100 GPUs x 60 series: {bytes} dictionary bytes, {} per series",
        bytes / 6000
    );
    let defaults = crate::config::Config::default()
        .validate()
        .unwrap()
        .limits
        .dictionary;
    // Under a third of the stream's bound, a sixth of the connection's.
    assert!(bytes * 3 < defaults.per_stream, "{bytes}");
    assert!(bytes * 6 < defaults.per_connection, "{bytes}");
}

#[test]
fn an_invalid_definition_keeps_its_reason_not_its_labels() {
    let b = budgets(100);
    let mut d = StreamDictionary::new(10);
    let labels: Vec<(String, String)> = (0..5000)
        .map(|i| (format!("k{i}"), "v".repeat(50)))
        .collect();
    let labels: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = run(
        &b,
        &mut d,
        batch(vec![def(3, "m", &labels)], &[(3, NOW, 1.0)]),
    );
    assert_eq!(reasons(&out.ack), vec![(RejectReason::Invalid, 1)]);
    assert!(out.ack.rejections[0].message.contains("series 3"));
    assert!(d.bytes() < 1024, "{} bytes for 5000 labels", d.bytes());
}

#[test]
fn definitions_past_a_byte_bound_are_refused_and_their_points_say_why() {
    let b = budgets(10_000);
    let conn = Arc::new(ByteBudget::new(20_000));
    let relay = Arc::new(ByteBudget::new(1 << 20));
    let mut d1 = StreamDictionary::bounded(1000, 12_000, conn.clone(), relay.clone());
    let long = "x".repeat(1000);
    let defs = |from: u32| {
        (from..from + 20)
            .map(|i| def(i, "m", &[("a", long.as_str())]))
            .collect::<Vec<_>>()
    };
    let out = run(
        &b,
        &mut d1,
        batch(defs(0), &[(0, NOW, 1.0), (19, NOW, 1.0)]),
    );
    assert!(out.refused_defs > 0 && out.refused_defs < 20);
    assert_eq!((out.ack.accepted, out.ack.rejected), (1, 1));
    let msg = &out.ack.rejections[0].message;
    assert!(
        msg.contains("limits.max_dictionary_bytes_per_stream = 12000"),
        "{msg}"
    );
    assert!(d1.bytes() <= 12_000);
    assert_eq!(conn.used(), d1.bytes());

    // A second stream of the connection runs into the connection's bound.
    let mut d2 = StreamDictionary::bounded(1000, 12_000, conn.clone(), relay.clone());
    let out = run(&b, &mut d2, batch(defs(0), &[(19, NOW, 1.0)]));
    assert!(out.refused_defs > 0);
    assert!(
        out.ack.rejections[0]
            .message
            .contains("max_dictionary_bytes_per_connection"),
    );
    assert!(conn.used() <= 20_000);
    assert_eq!(conn.used(), d1.bytes() + d2.bytes());
    assert_eq!(relay.used(), conn.used());

    // Redefining an id gives its old bytes back first: same size, no growth.
    let before = d1.bytes();
    let out = run(&b, &mut d1, batch(defs(0)[..1].to_vec(), &[(0, NOW, 2.0)]));
    assert_eq!((out.refused_defs, out.ack.accepted), (0, 1));
    assert_eq!(d1.bytes(), before);

    // A closed stream gives everything back.
    drop(d1);
    drop(d2);
    assert_eq!((conn.used(), relay.used()), (0, 0));
}

#[test]
fn a_streams_series_share_their_metric_names_up_to_a_bound() {
    let b = budgets(10_000);
    let mut d = StreamDictionary::new(5000);
    // Two series of "gpu_temp", then 1030 more metrics of one series each.
    let mut defs = vec![
        def(0, "gpu_temp", &[("gpu", "0")]),
        def(1, "gpu_temp", &[("gpu", "1")]),
    ];
    defs.extend((2..1032).map(|i| def(i, &format!("m{i}"), &[])));
    defs.push(def(1032, "m1031", &[("a", "b")]));
    defs.push(def(1033, "m3", &[("a", "b")]));
    let out = run(&b, &mut d, batch(defs, &[(0, NOW, 1.0)]));
    assert_eq!(out.bad_defs + out.refused_defs, 0);
    let metric = |id| d.lookup(id).unwrap().metric.clone();
    assert!(Arc::ptr_eq(&metric(0), &metric(1)), "one name, one Arc");
    assert_eq!(&*metric(0), "gpu_temp");
    // The 1024 shared names are "gpu_temp" and m2 to m1024: m1025 on are
    // past the bound, and each series holds its own.
    assert!(Arc::ptr_eq(&metric(3), &metric(1033)));
    assert!(!Arc::ptr_eq(&metric(1031), &metric(1032)));
    assert_eq!(&*metric(1032), "m1031");
}

#[test]
fn allocations_are_counted_as_the_allocator_rounds_them() {
    use super::dictionary::allocated;
    assert_eq!(allocated(0), 0);
    assert_eq!(allocated(1), 32, "glibc's smallest chunk");
    assert_eq!(allocated(24), 32);
    assert_eq!(allocated(25), 48);
    assert_eq!(allocated(1000), 1008);
}

#[test]
fn tiny_labels_are_counted_by_what_they_allocate_not_their_text() {
    let b = budgets(10);
    let mut d = StreamDictionary::new(10);
    let labels: Vec<(String, String)> = (0..32).map(|i| (format!("k{i}"), "v".into())).collect();
    let labels: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = run(&b, &mut d, batch(vec![def(0, "m", &labels)], &[]));
    assert_eq!((out.bad_defs, out.refused_defs), (0, 0));
    // Each label: its 48-byte slot in the array and two allocations of at
    // least 32 bytes, where its text is 3 or 4 bytes.
    let label = std::mem::size_of::<horizon_shared::proto::Label>();
    assert!(
        d.bytes() >= 32 * (label + 64),
        "{} bytes for 32 one-byte labels",
        d.bytes()
    );
}
