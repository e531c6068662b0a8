use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// The relay's phases, as a process would name its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Accept,
    Connections,
    Sinks,
    Exit,
}

impl Phases for Phase {
    const ALL: &'static [Self] = &[Phase::Accept, Phase::Connections, Phase::Sinks, Phase::Exit];

    fn as_str(self) -> &'static str {
        match self {
            Phase::Accept => "stop accepting",
            Phase::Connections => "drain connections",
            Phase::Sinks => "flush sinks",
            Phase::Exit => "exit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

fn deadlines(each: Duration) -> impl Fn(Phase) -> Duration {
    move |_| each
}

/// Each component records when it saw its phase start and when it
/// finished; a phase starts only once the previous one's components are done.
#[tokio::test]
async fn phases_run_in_order_each_after_the_previous_one_finished() {
    let sd = Shutdown::<Phase>::new();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    // Registered in reverse order, to show registration order does not matter.
    for &phase in Phase::ALL.iter().rev() {
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
    let report = sd.run(deadlines(Duration::from_secs(30))).await;
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
    let sd = Shutdown::<Phase>::new();
    let stuck = sd.register(Phase::Connections, "connection from node-7");
    let signal = sd.signal(Phase::Connections);
    sd.spawn(Phase::Connections, "connection from node-8", async move {
        signal.cancelled().await;
    });
    sd.spawn(Phase::Sinks, "parquet sink", std::future::pending::<()>());
    let exit = sd.signal(Phase::Exit);
    let report = sd.run(deadlines(Duration::from_millis(100))).await;
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
fn summary_names_the_first_ten_and_counts_the_rest() {
    let names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    assert_eq!(
        summary(&names),
        "c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 and 2 more"
    );
    assert_eq!(summary(&names[..2]), "c0, c1");
}
