use super::*;

fn handshakes(max: usize, retry_per_sec: u32) -> (Arc<Handshakes>, Gauges) {
    let g = Gauges::default();
    (Handshakes::new(max, retry_per_sec, g.clone()), g)
}

fn start(d: (Decision, bool)) -> Ticket {
    match d {
        (Decision::Start(t), false) => t,
        other => panic!("expected a start without eviction, got {other:?}"),
    }
}

fn wait(d: (Decision, bool)) -> Waiting {
    match d {
        (Decision::Wait(w), false) => w,
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[tokio::test]
async fn a_full_bound_retries_the_unvalidated_and_queues_the_validated() {
    let (h, g) = handshakes(2, 1_000_000);
    let t0 = Instant::now();
    let a = start(h.admit_at(false, true, t0));
    let b = start(h.admit_at(false, true, t0));
    assert_eq!(g.in_progress.get(), 2);
    assert!(matches!(
        h.admit_at(false, true, t0),
        (Decision::Retry, false)
    ));
    // Validated (or no longer retryable), nothing stalled: they wait, in order.
    let mut first = wait(h.admit_at(true, false, t0));
    let second = wait(h.admit_at(true, false, t0));
    assert_eq!((h.len(), g.queued.get()), ((2, 2), 2));
    // A finished handshake hands its place to the first waiting.
    drop(a);
    let c = first
        .ticket()
        .await
        .expect("the first waiting gets the place");
    assert_eq!(
        (h.len(), g.in_progress.get(), g.queued.get()),
        ((2, 1), 2, 1)
    );
    assert!(!b.evicted.is_cancelled(), "nobody was evicted");
    // One that gave up leaves the queue; the place goes back to the bound.
    drop(second);
    assert_eq!((h.len(), g.queued.get()), ((2, 0), 0));
    drop(b);
    drop(c);
    assert_eq!((h.len(), g.in_progress.get()), ((0, 0), 0));
    drop(first);
}

#[tokio::test]
async fn a_stalled_handshake_makes_room_and_a_young_one_does_not() {
    let (h, g) = handshakes(1, 1_000_000);
    let t0 = Instant::now();
    let a = start(h.admit_at(false, true, t0));
    let young = t0 + STALLED_AFTER / 2;
    let waiting = wait(h.admit_at(true, false, young));
    assert!(!a.evicted.is_cancelled());
    let stalled = t0 + STALLED_AFTER;
    let (Decision::Start(b), true) = h.admit_at(true, false, stalled) else {
        panic!("the stalled handshake makes room")
    };
    assert!(a.evicted.is_cancelled());
    assert_eq!((h.len(), g.in_progress.get()), ((1, 1), 1));
    drop(a);
    assert_eq!(
        (h.len(), g.in_progress.get()),
        ((1, 1), 1),
        "an evicted ticket is uncounted once and passes no place on"
    );
    drop(waiting);
    drop(b);
    assert_eq!(
        (h.len(), g.in_progress.get(), g.queued.get()),
        ((0, 0), 0, 0)
    );
}

#[test]
fn a_full_queue_drops_the_initial() {
    let (h, g) = handshakes(1, 1_000_000);
    let t0 = Instant::now();
    let _a = start(h.admit_at(false, true, t0));
    let queued: Vec<Waiting> = (0..QUEUE_PER_PLACE)
        .map(|_| wait(h.admit_at(true, false, t0)))
        .collect();
    assert_eq!(g.queued.get(), QUEUE_PER_PLACE as i64);
    assert!(matches!(
        h.admit_at(true, false, t0),
        (Decision::Ignore, false)
    ));
    drop(queued);
    assert_eq!(g.queued.get(), 0);
    assert!(matches!(
        h.admit_at(true, false, t0),
        (Decision::Wait(_), false)
    ));
}

#[test]
fn a_place_handed_to_a_waiter_that_left_passes_on() {
    let (h, g) = handshakes(1, 1_000_000);
    let t0 = Instant::now();
    let a = start(h.admit_at(false, true, t0));
    let mut gone = wait(h.admit_at(true, false, t0));
    let mut next = wait(h.admit_at(true, false, t0));
    // The first waiter's receiver is closed, but it is still queued (its
    // Waiting not yet dropped): the place sent to it comes back.
    gone.ticket.close();
    drop(a);
    let t = next
        .ticket
        .try_recv()
        .expect("the place passed to the next waiting");
    assert_eq!((h.len(), g.in_progress.get()), ((1, 0), 1));
    drop(gone);
    drop(t);
    assert_eq!(
        (h.len(), g.in_progress.get(), g.queued.get()),
        ((0, 0), 0, 0)
    );
}

#[test]
fn above_the_rate_every_unvalidated_initial_is_retried() {
    let (h, g) = handshakes(1000, 3);
    let rate = g.rate;
    let t0 = h.started;
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut tickets = Vec::new();
    // Second 0: three are started, the fourth is past the threshold.
    for _ in 0..3 {
        tickets.push(start(h.admit_at(false, true, at(0))));
    }
    assert!(matches!(
        h.admit_at(false, true, at(0)),
        (Decision::Retry, false)
    ));
    assert_eq!(rate.validating.get(), 1);
    // A validated address (it answered a Retry) or one that may not be
    // retried again is started.
    tickets.push(start(h.admit_at(true, false, at(0))));
    tickets.push(start(h.admit_at(false, false, at(0))));
    // Second 1 judges by second 0's count (6 > 3): still retried.
    assert!(matches!(
        h.admit_at(false, true, at(1)),
        (Decision::Retry, false)
    ));
    assert_eq!(rate.per_sec.get(), 6);
    // A quiet second later: started again.
    tickets.push(start(h.admit_at(false, true, at(3))));
    assert_eq!((rate.per_sec.get(), rate.validating.get()), (0, 0));
}

#[test]
fn threshold_zero_always_retries_unvalidated_initials() {
    let (h, g) = handshakes(1000, 0);
    assert_eq!(g.rate.validating.get(), 1);
    assert!(matches!(
        h.admit_at(false, true, Instant::now()),
        (Decision::Retry, false)
    ));
    let _t = start(h.admit_at(true, false, Instant::now()));
}
