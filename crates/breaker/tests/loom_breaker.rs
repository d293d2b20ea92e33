//! loom models of admission and transitions. Run with
//! `RUSTFLAGS="--cfg cache_loom" cargo test --release -p cache-breaker --test loom_breaker`
//! (`cargo xtask test` does).
#![cfg(cache_loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_breaker::{CircuitBreaker, MockClock, State, Transition};
use loom::thread;

fn breaker(permitted: u32, threshold: u32) -> (Arc<CircuitBreaker>, MockClock, Arc<AtomicUsize>) {
    let clock = MockClock::new();
    let to_half_open = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&to_half_open);
    let b = CircuitBreaker::builder()
        .consecutive_failures(threshold)
        .wait_in_open(Duration::from_secs(1))
        .permitted_in_half_open(permitted)
        .clock(clock.clone())
        .on_transition(move |t: &Transition| {
            if t.to == State::HalfOpen {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .expect("valid");
    (Arc::new(b), clock, to_half_open)
}

#[test]
fn many_callers_at_the_open_to_half_open_instant() {
    loom::model(|| {
        let (b, clock, to_half_open) = breaker(1, 1);
        b.try_acquire().expect("closed").failure();
        clock.advance(Duration::from_secs(1));
        let holding = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let max_held = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (b, holding, max_held) = (b.clone(), holding.clone(), max_held.clone());
                thread::spawn(move || {
                    if let Ok(p) = b.try_acquire() {
                        let n = holding.fetch_add(1, loom::sync::atomic::Ordering::SeqCst) + 1;
                        max_held.fetch_max(n, loom::sync::atomic::Ordering::SeqCst);
                        holding.fetch_sub(1, loom::sync::atomic::Ordering::SeqCst);
                        drop(p); // frees the slot without a verdict
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert!(
            max_held.load(loom::sync::atomic::Ordering::SeqCst) <= 1,
            "at most N probes at once"
        );
        assert_eq!(
            to_half_open.load(Ordering::SeqCst),
            1,
            "exactly one transition"
        );
        assert_eq!(b.state(), State::HalfOpen);
        // Not wedged: the slot is free again.
        b.try_acquire().expect("a probe is admitted").success();
        assert_eq!(b.state(), State::Closed);
    });
}

#[test]
fn concurrent_failures_trip_exactly_once() {
    loom::model(|| {
        let (b, _clock, _) = breaker(1, 2);
        let b2 = b.clone();
        // Two failures race; the second of them (whichever) reaches the threshold.
        let t = thread::spawn(move || b2.try_acquire().expect("closed").failure());
        b.try_acquire().expect("closed").failure();
        t.join().expect("no panic");
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.metrics().transitions, 1);
    });
}

#[test]
fn probe_success_racing_probe_failure() {
    loom::model(|| {
        let (b, clock, _) = breaker(2, 1);
        b.try_acquire().expect("closed").failure();
        clock.advance(Duration::from_secs(1));
        let b2 = b.clone();
        let t = thread::spawn(move || {
            if let Ok(p) = b2.try_acquire() {
                p.success();
            }
        });
        // Two slots: this probe is admitted whatever the other thread did.
        b.try_acquire().expect("probe").failure();
        t.join().expect("no panic");
        // Whatever the order, one failed probe reopens.
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.metrics().transitions, 3);
    });
}

#[test]
fn ending_the_open_wait_racing_callers_admits_one_probe() {
    loom::model(|| {
        let (b, _clock, to_half_open) = breaker(1, 1);
        b.try_acquire().expect("closed").failure();
        // Still inside the wait: only the end of it lets a caller through.
        let ender = {
            let b = b.clone();
            thread::spawn(move || b.end_open_wait())
        };
        let caller = {
            let b = b.clone();
            thread::spawn(move || b.try_acquire().ok().map(|p| p.is_probe()))
        };
        ender.join().expect("no panic");
        let admitted = caller.join().expect("no panic");
        // Admitted only as a probe, and only after the wait was ended.
        assert!(admitted.is_none_or(|probe| probe));
        let halves = to_half_open.load(Ordering::SeqCst);
        assert_eq!(halves, usize::from(admitted.is_some()));
        // Not wedged: once the wait is over, the (free) probe slot admits a call.
        match b.state() {
            State::Open => b.end_open_wait(),
            state => assert_eq!(state, State::HalfOpen),
        }
        b.try_acquire().expect("a probe").success();
        assert_eq!(b.state(), State::Closed);
    });
}

#[test]
fn ending_the_open_wait_racing_a_failed_probe() {
    loom::model(|| {
        let (b, clock, _) = breaker(1, 1);
        b.try_acquire().expect("closed").failure();
        clock.advance(Duration::from_secs(1));
        let prober = {
            let b = b.clone();
            thread::spawn(move || b.try_acquire().expect("the only probe").failure())
        };
        b.end_open_wait();
        prober.join().expect("no panic");
        // The failed probe reopened the breaker; ended before or after, the
        // wait is never longer than the reopened one and never wedges.
        assert_eq!(b.state(), State::Open);
        let left = b.retry_after().expect("open");
        assert!(left <= Duration::from_secs(1), "{left:?}");
        clock.advance(left);
        b.try_acquire().expect("a probe").success();
        assert_eq!(b.state(), State::Closed);
    });
}
