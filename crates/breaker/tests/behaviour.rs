//! Behaviour of the breaker on a mock clock: policies, boundaries, probes,
//! generations, cancellation, classification, slow calls and events.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use cache_breaker::{CallError, CircuitBreaker, MockClock, Permit, State, Transition};

const WAIT: Duration = Duration::from_secs(10);

fn fail(b: &CircuitBreaker) {
    b.try_acquire().expect("admitted").failure();
}

fn succeed(b: &CircuitBreaker) {
    b.try_acquire().expect("admitted").success();
}

/// A breaker that trips on one failure and admits one probe, already tripped.
fn tripped_one_probe() -> (CircuitBreaker, MockClock) {
    let clock = MockClock::new();
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .wait_in_open(WAIT)
        .permitted_in_half_open(1)
        .clock(clock.clone())
        .build()
        .expect("valid");
    fail(&b);
    (b, clock)
}

type Log = Arc<Mutex<Vec<(State, State)>>>;

fn events() -> (Log, impl Fn(&Transition) + Send + Sync + 'static) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    (log, move |t: &Transition| {
        sink.lock().expect("lock").push((t.from, t.to))
    })
}

#[test]
fn consecutive_failures_trip_at_the_threshold_and_a_success_resets() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(3)
        .build()
        .expect("valid");
    fail(&b);
    fail(&b);
    succeed(&b); // resets the run
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), State::Closed);
    fail(&b); // third in a row: >= 3
    assert_eq!(b.state(), State::Open);
}

#[test]
fn nine_of_nine_failures_with_minimum_ten_do_not_trip() {
    let b = CircuitBreaker::builder()
        .count_window(20, 0.5, 10)
        .build()
        .expect("valid");
    for _ in 0..9 {
        fail(&b);
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(
        b.metrics().failure_rate,
        None,
        "below minimum calls: no rate yet"
    );
    fail(&b);
    assert_eq!(b.state(), State::Open);
}

#[test]
fn the_rate_threshold_is_inclusive() {
    let b = CircuitBreaker::builder()
        .count_window(10, 0.5, 10)
        .build()
        .expect("valid");
    for _ in 0..6 {
        succeed(&b);
    }
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.state(), State::Closed, "40% < 50%");
    assert_eq!(b.metrics().failure_rate, Some(0.4));
    fail(&b); // window now: 5 successes, 5 failures = 50%
    assert_eq!(b.state(), State::Open);
}

#[test]
fn the_count_window_slides() {
    let b = CircuitBreaker::builder()
        .count_window(4, 0.75, 4)
        .build()
        .expect("valid");
    fail(&b);
    fail(&b);
    succeed(&b);
    succeed(&b); // [F F S S] = 50%
    succeed(&b); // [F S S S]
    fail(&b); // [S S S F] = 25%
    fail(&b); // [S S F F] = 50%
    assert_eq!(b.state(), State::Closed);
    fail(&b); // [S F F F] = 75%
    assert_eq!(b.state(), State::Open);
}

#[test]
fn the_time_window_forgets_old_failures() {
    let clock = MockClock::new();
    let b = CircuitBreaker::builder()
        .time_window(Duration::from_secs(10), 0.5, 4)
        .clock(clock.clone())
        .build()
        .expect("valid");
    for _ in 0..3 {
        fail(&b);
    }
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(b.metrics().failures_in_window, 3, "still inside the window");
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        b.metrics().calls_in_window,
        0,
        "a full window later they are gone"
    );
    fail(&b); // 1 call: below the minimum
    succeed(&b);
    succeed(&b);
    assert_eq!(b.state(), State::Closed);
    fail(&b); // 2 of 4 = 50%
    assert_eq!(b.state(), State::Open);
}

#[test]
fn open_rejects_until_the_wait_has_passed_then_admits_a_probe() {
    let (b, clock) = tripped_one_probe();
    let r = b.try_acquire().expect_err("open");
    assert_eq!(r.state(), State::Open);
    assert_eq!(r.retry_after(), Some(WAIT));
    clock.advance(WAIT - Duration::from_millis(1));
    let r = b.try_acquire().expect_err("still open at wait - 1 ms");
    assert_eq!(r.retry_after(), Some(Duration::from_millis(1)));
    clock.advance(Duration::from_millis(1));
    let probe = b.try_acquire().expect("half-open at wait");
    assert!(probe.is_probe());
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(
        b.try_acquire().expect_err("one probe only").state(),
        State::HalfOpen
    );
    probe.success();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.metrics().rejected, 3);
}

#[test]
fn half_open_admits_exactly_n_of_100_concurrent_callers() {
    let clock = MockClock::new();
    let b = Arc::new(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .wait_in_open(WAIT)
            .permitted_in_half_open(5)
            .clock(clock.clone())
            .build()
            .expect("valid"),
    );
    fail(&b);
    clock.advance(WAIT);
    let start = Arc::new(Barrier::new(100));
    let hold = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (b, start, hold) = (b.clone(), start.clone(), hold.clone());
            std::thread::spawn(move || {
                start.wait();
                let permit = b.try_acquire();
                let admitted = permit.is_ok();
                hold.wait(); // nobody releases a slot before everyone has tried
                drop(permit);
                admitted
            })
        })
        .collect();
    let admitted = handles
        .into_iter()
        .map(|h| h.join().expect("no panic"))
        .filter(|a| *a)
        .count();
    assert_eq!(admitted, 5);
    assert_eq!(
        b.metrics().transitions,
        2,
        "closed→open, open→half-open, once each"
    );
}

#[test]
fn ending_the_open_wait_admits_a_probe_at_once_and_keeps_the_backoff() {
    let clock = MockClock::new();
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .wait_in_open(WAIT)
        .backoff(2.0, Duration::from_secs(60))
        .permitted_in_half_open(1)
        .clock(clock.clone())
        .build()
        .expect("valid");
    // Closed: nothing to end.
    b.end_open_wait();
    assert_eq!(b.state(), State::Closed);
    fail(&b);
    clock.advance(Duration::from_secs(1));
    assert_eq!(b.retry_after(), Some(WAIT - Duration::from_secs(1)));
    b.end_open_wait();
    assert_eq!(b.retry_after(), Some(Duration::ZERO));
    let probe = b.try_acquire().expect("a probe at once");
    assert!(probe.is_probe());
    // Half-open: the probe in flight is not disturbed.
    b.end_open_wait();
    assert_eq!(
        b.try_acquire().expect_err("still one probe only").state(),
        State::HalfOpen
    );
    probe.failure();
    assert_eq!(
        b.retry_after(),
        Some(WAIT * 2),
        "the failed probe grew the wait"
    );
    b.end_open_wait();
    b.try_acquire().expect("probe").success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn all_probes_must_succeed_and_one_failure_reopens_with_backoff() {
    let clock = MockClock::new();
    let (log, listener) = events();
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .wait_in_open(WAIT)
        .backoff(2.0, Duration::from_secs(30))
        .permitted_in_half_open(2)
        .clock(clock.clone())
        .on_transition(listener)
        .build()
        .expect("valid");
    fail(&b);
    clock.advance(WAIT);
    let p1 = b.try_acquire().expect("probe 1");
    let p2 = b.try_acquire().expect("probe 2");
    p1.success();
    assert_eq!(b.state(), State::HalfOpen, "one of two is not enough");
    p2.failure();
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.retry_after(), Some(WAIT * 2), "the wait doubled");

    clock.advance(WAIT * 2);
    b.try_acquire().expect("probe").failure();
    assert_eq!(
        b.retry_after(),
        Some(Duration::from_secs(30)),
        "capped at max"
    );
    clock.advance(Duration::from_secs(30));
    succeed(&b);
    succeed(&b);
    assert_eq!(b.state(), State::Closed);
    fail(&b);
    assert_eq!(b.retry_after(), Some(WAIT), "a close resets the backoff");

    use State::*;
    assert_eq!(
        *log.lock().expect("lock"),
        vec![
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed),
            (Closed, Open),
        ]
    );
}

#[test]
fn outcomes_from_an_older_generation_are_ignored() {
    let clock = MockClock::new();
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .wait_in_open(WAIT)
        .permitted_in_half_open(1)
        .clock(clock.clone())
        .build()
        .expect("valid");
    let stale: Permit<'_> = b.try_acquire().expect("closed");
    let stale2 = b.try_acquire().expect("closed");
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), State::Open);
    clock.advance(WAIT);
    let probe = b.try_acquire().expect("probe");
    stale.success(); // from the closed generation: must not close the breaker
    assert_eq!(b.state(), State::HalfOpen);
    stale2.failure(); // nor reopen it
    assert_eq!(b.state(), State::HalfOpen);
    probe.success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_dropped_permit_frees_its_probe_slot() {
    let (b, clock) = tripped_one_probe();
    clock.advance(WAIT);
    let probe = b.try_acquire().expect("probe");
    assert!(b.try_acquire().is_err());
    drop(probe);
    let probe = b.try_acquire().expect("the slot is free again");
    probe.ignore();
    assert_eq!(b.state(), State::HalfOpen, "ignored: no verdict");
    succeed(&b);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test]
async fn a_cancelled_call_never_wedges_half_open() {
    let (b, clock) = tripped_one_probe();
    clock.advance(WAIT);
    {
        let call = b.call(std::future::pending::<Result<(), ()>>());
        let timed = tokio::time::timeout(Duration::from_millis(10), call).await;
        assert!(timed.is_err(), "cancelled while holding the probe slot");
    }
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.call(async { Ok::<_, ()>(1) }).await.expect("probe"), 1);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test]
async fn classified_errors_can_be_neutral() {
    #[derive(Debug, PartialEq)]
    enum E {
        NotFound,
        Down,
    }
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .build()
        .expect("valid");
    let is_failure = |e: &E| *e == E::Down;
    for _ in 0..10 {
        let r = b
            .call_classified(async { Err::<(), _>(E::NotFound) }, is_failure)
            .await;
        assert!(matches!(r, Err(CallError::Inner(E::NotFound))));
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.metrics().ignored, 10);
    for _ in 0..2 {
        let _ = b
            .call_classified(async { Err::<(), _>(E::Down) }, is_failure)
            .await;
    }
    assert_eq!(b.state(), State::Open);
    let r = b.call(async { Ok::<_, E>(()) }).await;
    assert!(r.expect_err("rejected").is_rejected());
}

#[tokio::test]
async fn slow_successes_count_as_failures() {
    let clock = MockClock::new();
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .slow_call_duration(Duration::from_millis(100))
        .clock(clock.clone())
        .build()
        .expect("valid");
    let slow = |ms| {
        let clock = clock.clone();
        async move {
            clock.advance(Duration::from_millis(ms));
            Ok::<_, ()>(())
        }
    };
    b.call(slow(99)).await.expect("fast enough");
    b.call(slow(100)).await.expect("slow, but still a value");
    assert_eq!(b.state(), State::Closed);
    b.call(slow(150)).await.expect("slow");
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.metrics().slow_calls, 2);
}

#[test]
fn invalid_configurations_fail_at_build() {
    let cases = [
        (
            "consecutive_failures",
            CircuitBreaker::builder().consecutive_failures(0),
        ),
        (
            "count_window.size",
            CircuitBreaker::builder().count_window(0, 0.5, 1),
        ),
        (
            "threshold",
            CircuitBreaker::builder().count_window(10, 0.0, 1),
        ),
        (
            "threshold",
            CircuitBreaker::builder().count_window(10, 1.5, 1),
        ),
        (
            "minimum_calls",
            CircuitBreaker::builder().count_window(10, 0.5, 11),
        ),
        (
            "time_window",
            CircuitBreaker::builder().time_window(Duration::from_millis(1), 0.5, 1),
        ),
        (
            "wait_in_open",
            CircuitBreaker::builder().wait_in_open(Duration::ZERO),
        ),
        (
            "backoff.multiplier",
            CircuitBreaker::builder().backoff(0.5, Duration::from_secs(60)),
        ),
        (
            "backoff.max",
            CircuitBreaker::builder().backoff(2.0, Duration::from_secs(1)),
        ),
        (
            "permitted_in_half_open",
            CircuitBreaker::builder().permitted_in_half_open(0),
        ),
        (
            "slow_call_duration",
            CircuitBreaker::builder().slow_call_duration(Duration::ZERO),
        ),
    ];
    for (field, builder) in cases {
        let err = builder.build().expect_err(field);
        assert_eq!(err.field(), field, "{err}");
    }
}
