//! Detached flights (`Group::work_detached`): the flight belongs to the work, so
//! cancelled or idle callers never cause a second execution.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Waker};
use std::time::Duration;

use cache_singleflight::{FlightError, Group, Outcome, Role};
use tokio::sync::Notify;

type G = Group<u32, String, String>;

/// Waits (yielding) until `cond` holds; panics after ~10 s so a bug cannot hang CI.
async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    panic!("condition not reached");
}

/// A detached call whose work counts its runs and waits for `gate`.
fn call(
    group: &Arc<G>,
    runs: &Arc<AtomicUsize>,
    gate: &Arc<Notify>,
    value: &str,
) -> impl Future<Output = Outcome<String, String>> + Send + 'static {
    let (group, runs, gate, value) = (group.clone(), runs.clone(), gate.clone(), value.to_string());
    async move {
        group
            .work_detached(
                1,
                || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok(value)
                },
                |fut| {
                    tokio::spawn(fut);
                },
            )
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_first_caller_hands_nothing_over_and_nobody_runs_twice() {
    let group = Arc::new(G::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let first = tokio::spawn(call(&group, &runs, &gate, "first"));
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    let early: Vec<_> = (0..20)
        .map(|_| tokio::spawn(call(&group, &runs, &gate, "early")))
        .collect();
    until(|| group.stats().joins == 20).await;

    // The first caller and half the early ones go away mid-load.
    first.abort();
    assert!(first.await.expect_err("aborted").is_cancelled());
    let (cancelled, kept): (Vec<_>, Vec<_>) =
        early.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, c) in &cancelled {
        c.abort();
    }
    for (_, c) in cancelled {
        let _ = c.await;
    }
    // The flight is still the work's: a caller arriving now joins it.
    assert_eq!(group.in_flight(), 1);
    let late = tokio::spawn(call(&group, &runs, &gate, "late"));
    until(|| group.stats().joins == 21).await;

    gate.notify_one();
    for (_, c) in kept {
        let out = c.await.expect("no panic");
        assert_eq!(out.role(), Role::Follower);
        assert!(out.is_shared());
        assert_eq!(out.into_result().expect("value"), "first");
    }
    assert_eq!(
        late.await.expect("no panic").into_result().expect("value"),
        "first"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one execution however many callers left"
    );
    let st = group.stats();
    assert_eq!((st.executions, st.takeovers), (1, 0));
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_finishes_when_every_caller_is_gone_and_holds_the_key_until_then() {
    let group = Arc::new(G::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let only = tokio::spawn(call(&group, &runs, &gate, "orphan"));
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    only.abort();
    let _ = only.await;
    assert_eq!(group.in_flight(), 1, "the running work keeps its flight");
    gate.notify_one();
    until(|| group.in_flight() == 0).await;
    // Once it has ended, the next call runs again (not a cache).
    let gate2 = Arc::new(Notify::new());
    let next = tokio::spawn(call(&group, &runs, &gate2, "next"));
    until(|| runs.load(Ordering::SeqCst) == 2).await;
    gate2.notify_one();
    let out = next.await.expect("no panic");
    assert_eq!(out.role(), Role::Leader);
    assert!(!out.is_shared());
    assert_eq!(out.into_result().expect("value"), "next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_caller_polled_once_and_held_does_not_hold_up_the_others() {
    let group = Arc::new(G::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let mut held = Box::pin(call(&group, &runs, &gate, "value"));
    assert!(
        held.as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    let follower = tokio::spawn(call(&group, &runs, &gate, "other"));
    until(|| group.stats().joins == 1).await;
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    gate.notify_one();
    let out = follower.await.expect("no panic");
    assert_eq!(out.into_result().expect("value"), "value");
    assert_eq!(held.await.into_result().expect("value"), "value");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_work_fails_every_caller_and_leaves_nothing_behind() {
    let group = Arc::new(G::new());
    let gate = Arc::new(Notify::new());
    let g2 = Arc::clone(&gate);
    let first = {
        let group = group.clone();
        tokio::spawn(async move {
            group
                .work_detached(
                    1,
                    || async move {
                        g2.notified().await;
                        panic!("the source exploded")
                    },
                    |fut| {
                        tokio::spawn(fut);
                    },
                )
                .await
        })
    };
    let runs = Arc::new(AtomicUsize::new(0));
    until(|| group.in_flight() == 1).await;
    let follower = tokio::spawn(call(&group, &runs, &gate, "never"));
    until(|| group.stats().joins == 1).await;
    gate.notify_waiters();
    for out in [
        first.await.expect("caught"),
        follower.await.expect("caught"),
    ] {
        assert!(matches!(
            out.into_result(),
            Err(FlightError::LeaderPanicked)
        ));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(group.stats().panics, 1);
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test]
async fn work_dropped_by_its_executor_is_abandoned_not_hung() {
    let group = Arc::new(G::new());
    let runs = Arc::new(AtomicUsize::new(0));
    // A "spawn" that drops the future at once, like an executor shutting down.
    let out = group
        .work_detached(1, || async { Ok("never".to_string()) }, drop)
        .await;
    assert!(matches!(out.into_result(), Err(FlightError::Abandoned)));
    assert_eq!(group.in_flight(), 0);
    let out = call(&group, &runs, &Arc::new(Notify::new()), "x");
    let mut out = pin!(out);
    // The next call starts a new flight.
    assert!(
        out.as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    assert_eq!(group.in_flight(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_caller_takes_over_a_cancelled_inline_leader() {
    let group = Arc::new(G::new());
    let never = Arc::new(Notify::new());
    let inline = {
        let (group, never) = (group.clone(), never.clone());
        tokio::spawn(async move {
            group
                .work(1, || async move {
                    never.notified().await;
                    Ok("inline".to_string())
                })
                .await
        })
    };
    until(|| group.in_flight() == 1).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let detached = tokio::spawn(call(&group, &runs, &gate, "detached"));
    until(|| group.stats().joins == 1).await;
    inline.abort();
    let _ = inline.await;
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    gate.notify_one();
    let out = detached.await.expect("no panic");
    assert_eq!(out.role(), Role::TookOver);
    assert_eq!(out.into_result().expect("value"), "detached");
    assert_eq!(group.in_flight(), 0);
}
