//! The relay's read path on arbitrary stream bytes: frames are cut and
//! decoded as `AgentFrame`s, and every batch goes through `process_batch`
//! (series dictionary with its id and byte bounds, validation, budget
//! admission) on one stream, as `connection.rs` does. Never panics, and
//! every ack accounts for every point of its batch.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use horizon_relay::budget::Budgets;
use horizon_relay::config::BudgetSettings;
use horizon_relay::ingest::{ByteBudget, IngestLimits, StreamDictionary, process_batch};
use horizon_shared::codec;
use horizon_shared::model::{SeriesLimits, TimeWindow};
use horizon_shared::proto::{AgentFrame, agent_frame};
use libfuzzer_sys::fuzz_target;

/// 2027-01-15, a fixed "now" so that runs are reproducible.
const NOW_NS: i64 = 1_800_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    // Small bounds, so the fuzzer reaches them.
    let budgets = Budgets::new(BudgetSettings {
        max_series_per_node: 64,
        max_series_per_metric: Some(16),
        max_series_total: 128,
        series_ttl: Duration::from_secs(600),
        metrics_top_nodes: 4,
        overrides: BTreeMap::new(),
    });
    let node = budgets.node("fuzz-node");
    let limits = IngestLimits {
        max_batch_size: 256,
        series: SeriesLimits::default(),
        time_window: TimeWindow {
            max_age_ns: 3600 * 1_000_000_000,
            max_future_ns: 600 * 1_000_000_000,
        },
    };
    let connection = Arc::new(ByteBudget::new(16 * 1024));
    let relay = Arc::new(ByteBudget::new(32 * 1024));
    let mut dict = StreamDictionary::bounded(1024, 8 * 1024, connection.clone(), relay.clone());
    let mut buf = BytesMut::from(data);
    // Stops at the first incomplete or bad frame, as the relay does.
    while let Ok(Some(frame)) = codec::decode::<AgentFrame>(&mut buf, 64 * 1024) {
        let Some(agent_frame::Kind::Batch(batch)) = frame.kind else {
            continue;
        };
        let out = process_batch(batch, &mut dict, &budgets, &node, &limits, NOW_NS, 1000);
        let ack = &out.ack;
        assert_eq!(ack.accepted as usize, out.accepted.len());
        let rejected: u32 = ack.rejections.iter().map(|r| r.count).sum();
        assert_eq!(ack.rejected, rejected);
        assert!(dict.bytes() <= 8 * 1024);
        assert!(connection.used() <= connection.limit());
    }
    drop(dict);
    // A dropped dictionary gives every byte back.
    assert_eq!(connection.used(), 0);
    assert_eq!(relay.used(), 0);
});
