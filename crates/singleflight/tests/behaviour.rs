//! Behaviour tests: each bullet of the contract, with gates instead of sleeps so
//! counts are exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_singleflight::{FlightError, Group, Role};
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

fn spawn_call(
    group: &Arc<G>,
    key: u32,
    runs: &Arc<AtomicUsize>,
    gate: &Arc<Notify>,
    value: &str,
) -> tokio::task::JoinHandle<cache_singleflight::Outcome<String, String>> {
    let (group, runs, gate, value) = (group.clone(), runs.clone(), gate.clone(), value.to_string());
    tokio::spawn(async move {
        group
            .work(key, || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Ok(value)
            })
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_execution_for_1000_callers() {
    let group = Arc::new(G::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let calls: Vec<_> = (0..1_000)
        .map(|_| spawn_call(&group, 1, &runs, &gate, "v"))
        .collect();
    until(|| group.stats().joins == 999).await;
    assert_eq!(group.in_flight(), 1);
    gate.notify_one();
    let mut leaders = 0;
    for c in calls {
        let out = c.await.expect("no panic");
        leaders += usize::from(out.role() == Role::Leader);
        assert!(out.is_shared());
        assert_eq!(out.into_result().expect("value"), "v");
    }
    assert_eq!(leaders, 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let st = group.stats();
    assert_eq!((st.executions, st.joins, st.takeovers), (1, 999, 0));
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test]
async fn a_lone_call_is_not_shared_and_nothing_is_cached() {
    let group = G::new();
    for i in 0..3 {
        let out = group
            .work(7, || async move { Ok(format!("run {i}")) })
            .await;
        assert!(!out.is_shared());
        assert_eq!(out.role(), Role::Leader);
        assert_eq!(out.into_result().expect("ok"), format!("run {i}"));
    }
    assert_eq!(group.stats().executions, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_is_shared_as_one_arc_and_not_kept() {
    let group = Arc::new(G::new());
    let gate = Arc::new(Notify::new());
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let (group, gate) = (group.clone(), gate.clone());
            tokio::spawn(async move {
                group
                    .work(1, || async move {
                        gate.notified().await;
                        Err::<String, _>("source down".to_string())
                    })
                    .await
            })
        })
        .collect();
    until(|| group.stats().joins == 9).await;
    gate.notify_one();
    let mut errors = Vec::new();
    for c in calls {
        match c.await.expect("no panic").into_result() {
            Err(FlightError::Failed(e)) => errors.push(e),
            other => panic!("expected the shared error, got {other:?}"),
        }
    }
    assert_eq!(*errors[0], "source down");
    assert!(
        errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])),
        "one Arc for all"
    );
    // Not cached: the next call runs again and can succeed.
    let out = group
        .work(1, || async { Ok("recovered".to_string()) })
        .await;
    assert_eq!(out.into_result().expect("ok"), "recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_independent() {
    let group = Arc::new(G::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let slow = spawn_call(&group, 1, &runs, &gate, "slow");
    until(|| group.in_flight() == 1).await;
    // Key 2 completes while key 1's flight is held open.
    let out = group.work(2, || async { Ok("fast".to_string()) }).await;
    assert_eq!(out.into_result().expect("ok"), "fast");
    assert!(!slow.is_finished());
    gate.notify_one();
    assert_eq!(slow.await.expect("ok").into_result().expect("ok"), "slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_starts_a_new_flight_that_the_old_one_cannot_remove() {
    let group = Arc::new(G::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let (gate1, gate2) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let first = spawn_call(&group, 1, &runs, &gate1, "old");
    // Spawned tasks may start in any order: let `first` lead before anyone joins.
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    let early_follower = spawn_call(&group, 1, &runs, &gate1, "unused");
    until(|| group.stats().joins == 1).await;
    assert!(group.forget(&1));
    assert!(!group.forget(&1));
    let second = spawn_call(&group, 1, &runs, &gate2, "new");
    until(|| runs.load(Ordering::SeqCst) == 2).await;

    gate1.notify_one(); // the old flight finishes ...
    assert_eq!(first.await.expect("ok").into_result().expect("ok"), "old");
    assert_eq!(
        early_follower.await.expect("ok").into_result().expect("ok"),
        "old"
    );
    assert_eq!(
        group.in_flight(),
        1,
        "... and leaves the new flight in place"
    );

    let joiner = spawn_call(&group, 1, &runs, &gate2, "unused");
    until(|| group.stats().joins == 2).await;
    gate2.notify_one();
    assert_eq!(second.await.expect("ok").into_result().expect("ok"), "new");
    let j = joiner.await.expect("ok");
    assert_eq!(j.role(), Role::Follower);
    assert_eq!(j.into_result().expect("ok"), "new");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_reaches_the_leader_and_fails_the_followers() {
    let group = Arc::new(G::new());
    let gate = Arc::new(Notify::new());
    let leader = {
        let (group, gate) = (group.clone(), gate.clone());
        tokio::spawn(async move {
            group
                .work(1, || async move {
                    gate.notified().await;
                    panic!("boom in the loader");
                })
                .await
        })
    };
    until(|| group.in_flight() == 1).await;
    let followers: Vec<_> = (0..5)
        .map(|_| {
            let group = group.clone();
            tokio::spawn(async move { group.work(1, || async { Ok("never".to_string()) }).await })
        })
        .collect();
    until(|| group.stats().joins == 5).await;
    gate.notify_one();

    let err = leader.await.expect_err("the leader's task panicked");
    let payload = err.into_panic();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in the loader"));
    for f in followers {
        let out = f.await.expect("followers do not panic");
        assert!(matches!(
            out.into_result(),
            Err(FlightError::LeaderPanicked)
        ));
    }
    assert_eq!(group.in_flight(), 0);
    assert_eq!(group.stats().panics, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_is_replaced_by_exactly_one_follower() {
    let group = Arc::new(G::new());
    let leader_runs = Arc::new(AtomicUsize::new(0));
    let never = Arc::new(Notify::new());
    let leader = spawn_call(&group, 1, &leader_runs, &never, "leader");
    until(|| leader_runs.load(Ordering::SeqCst) == 1).await;

    let follower_runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let followers: Vec<_> = (0..20)
        .map(|_| spawn_call(&group, 1, &follower_runs, &gate, "taken over"))
        .collect();
    until(|| group.stats().joins == 20).await;

    leader.abort();
    assert!(leader.await.expect_err("aborted").is_cancelled());
    until(|| follower_runs.load(Ordering::SeqCst) == 1).await;
    gate.notify_one();
    let mut took_over = 0;
    for f in followers {
        let out = f.await.expect("no panic");
        took_over += usize::from(out.role() == Role::TookOver);
        assert_eq!(out.into_result().expect("value"), "taken over");
    }
    assert_eq!(took_over, 1);
    assert_eq!(
        follower_runs.load(Ordering::SeqCst),
        1,
        "one more execution, not N"
    );
    let st = group.stats();
    assert_eq!((st.executions, st.takeovers), (2, 1));
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_caller_cancels_nothing_is_left_behind() {
    let group = Arc::new(G::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let never = Arc::new(Notify::new());
    let calls: Vec<_> = (0..5)
        .map(|_| spawn_call(&group, 1, &runs, &never, "x"))
        .collect();
    until(|| group.stats().joins == 4).await;
    // Followers first, then the leader (the leader is whichever ran the work).
    for c in &calls {
        c.abort();
    }
    for c in calls {
        let _ = c.await;
    }
    assert_eq!(group.in_flight(), 0);
    let out = group.work(1, || async { Ok("fresh".to_string()) }).await;
    assert_eq!(out.role(), Role::Leader);
    assert_eq!(out.into_result().expect("ok"), "fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_follower_affects_no_one() {
    let group = Arc::new(G::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let leader = spawn_call(&group, 1, &runs, &gate, "v");
    until(|| group.in_flight() == 1).await;
    let quitter = spawn_call(&group, 1, &runs, &gate, "v");
    let stayer = spawn_call(&group, 1, &runs, &gate, "v");
    until(|| group.stats().joins == 2).await;
    quitter.abort();
    let _ = quitter.await;
    gate.notify_one();
    assert_eq!(leader.await.expect("ok").into_result().expect("ok"), "v");
    assert_eq!(stayer.await.expect("ok").into_result().expect("ok"), "v");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(group.stats().takeovers, 0);
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test]
async fn registration_is_lazy() {
    let group = G::new();
    let unpolled = group.work(1, || async { Ok("never polled".to_string()) });
    assert_eq!(group.in_flight(), 0);
    let out = group.work(1, || async { Ok("polled".to_string()) }).await;
    assert_eq!(out.role(), Role::Leader);
    drop(unpolled);
    assert_eq!(group.stats().executions, 1);
}

#[test]
fn works_without_any_async_runtime() {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc as StdArc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::thread::{self, Thread};

    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: StdArc<Self>) {
            self.0.unpark();
        }
    }
    fn block_on<F: Future>(f: F) -> F::Output {
        let waker = Waker::from(StdArc::new(Unpark(thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            thread::park();
        }
    }

    let group: StdArc<Group<u8, u64>> = StdArc::new(Group::new());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = StdArc::new(std::sync::Mutex::new(rx));
    let leader = {
        let group = group.clone();
        thread::spawn(move || {
            block_on(group.work(1, move || {
                // Blocks this thread until released: fine for a test executor.
                let _ = rx.lock().map(|r| r.recv());
                std::future::ready(Ok(42))
            }))
        })
    };
    while group.in_flight() == 0 {
        thread::yield_now();
    }
    let follower = {
        let group = group.clone();
        thread::spawn(move || block_on(group.work(1, || std::future::ready(Ok(0)))))
    };
    while group.stats().joins == 0 {
        thread::yield_now();
    }
    tx.send(()).expect("send");
    assert_eq!(leader.join().expect("ok").into_result().expect("ok"), 42);
    assert_eq!(follower.join().expect("ok").into_result().expect("ok"), 42);
}
