use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

fn deadlines(each: Duration) -> Deadlines {
    Deadlines {
        accept: each,
        connections: each,
        sinks: each,
        exit: each,
    }
}

/// Each component records when it saw its phase start and when it
/// finished; a phase starts only once the previous one's components are done.
#[tokio::test]
async fn phases_run_in_order_each_after_the_previous_one_finished() {
    let sd = Shutdown::new();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    // Registered in reverse order, to show registration order does not matter.
    for phase in Phase::ALL.into_iter().rev() {
        let (signal, log) = (sd.signal(phase), log.clone());
        sd.spawn(phase, phase.as_str(), async move {
            signal.cancelled().await;
            log.lock()
                .unwrap()
                .push(format!("start {}", phase.as_str()));
            // Some work, so a phase that did not wait would interleave.
            tokio::time::sleep(Duration::from_millis(20)).await;
            log.lock().unwrap().push(format!("end {}", phase.as_str()));
        });
    }
    let report = sd.run(&deadlines(Duration::from_secs(30))).await;
    assert!(report.clean(), "{report:?}");
    let expected: Vec<String> = Phase::ALL
        .iter()
        .flat_map(|p| {
            [
                format!("start {}", p.as_str()),
                format!("end {}", p.as_str()),
            ]
        })
        .collect();
    assert_eq!(*log.lock().unwrap(), expected);
}

/// A component that never finishes is reported by name, its task is
/// aborted, and the later phases still run.
#[tokio::test]
async fn a_component_that_does_not_finish_is_reported_by_name() {
    let sd = Shutdown::new();
    let stuck = sd.register(Phase::Connections, "connection from node-7");
    let signal = sd.signal(Phase::Connections);
    sd.spawn(Phase::Connections, "connection from node-8", async move {
        signal.cancelled().await;
    });
    sd.spawn(Phase::Sinks, "parquet sink", std::future::pending::<()>());
    let exit = sd.signal(Phase::Exit);
    let report = sd.run(&deadlines(Duration::from_millis(100))).await;
    assert_eq!(
        report.overran,
        vec![
            (
                Phase::Connections,
                vec!["connection from node-7".to_owned()]
            ),
            (Phase::Sinks, vec!["parquet sink".to_owned()]),
        ]
    );
    assert!(exit.is_cancelled(), "the exit phase ran after the overruns");
    // The stuck task was aborted: its registration goes away without it finishing.
    let sinks = &sd.inner.phases[Phase::Sinks.index()];
    for _ in 0..500 {
        if sinks.pending().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        sinks.pending().is_empty(),
        "the stuck sink task was not aborted"
    );
    // A registration (not a task) stays pending until its owner drops it.
    let connections = &sd.inner.phases[Phase::Connections.index()];
    assert_eq!(connections.pending().len(), 1);
    drop(stuck);
    assert!(connections.pending().is_empty());
}

#[test]
fn relay_deadlines_add_up_to_grace_plus_flush_plus_three_seconds() {
    let mut settings = crate::config::Config::default()
        .validate()
        .expect("default configuration is valid");
    settings.drain_grace = Duration::from_secs(5);
    settings.drain_flush = Duration::from_secs(10);
    let d = Deadlines::from_settings(&settings);
    assert_eq!(d.connections, Duration::from_secs(6));
    assert_eq!(d.sinks, Duration::from_secs(10));
    assert_eq!(d.total(), Duration::from_secs(18));
}

#[test]
fn summary_names_the_first_ten_and_counts_the_rest() {
    let names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    assert_eq!(
        summary(&names),
        "c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 and 2 more"
    );
    assert_eq!(summary(&names[..2]), "c0, c1");
}
