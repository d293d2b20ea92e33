//! The facade's L1 hit path: answered on the first poll, without allocating, and
//! only once the future is polled.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cache_core::MockClock;
use resilient_cache::Cache;

fn cache(clock: &MockClock) -> Cache<u64, u64> {
    Cache::builder("hot")
        .default_ttl(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .expect("valid config")
}

/// Polls once with a no-op waker.
fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
    let mut f = pin!(f);
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test]
async fn an_l1_hit_is_ready_at_once_and_allocates_nothing() {
    let clock = MockClock::default();
    let cache = cache(&clock);
    cache.set(7, 70).await.expect("set");
    // Warm up (thread-local stripe, lazily built state).
    assert!(poll_once(cache.get(&7)).is_ready());

    let counts = allocation_counter::measure(|| {
        for _ in 0..1_000 {
            let got = poll_once(cache.get(&7));
            assert!(matches!(got, Poll::Ready(Ok(Some(70)))));
            let got = poll_once(cache.get_or_load(7, |_| async { None }));
            assert!(matches!(got, Poll::Ready(Ok(Some(70)))));
        }
    });
    assert_eq!(counts.count_total, 0, "the hit path allocated: {counts:?}");
    assert_eq!(cache.stats().l1_hits, 2_001);

    // Without an L2, a `get` miss is answered at once too, and counted.
    let counts = allocation_counter::measure(|| {
        assert!(matches!(poll_once(cache.get(&8)), Poll::Ready(Ok(None))));
    });
    assert_eq!(counts.count_total, 0, "the miss allocated: {counts:?}");
    assert_eq!(cache.stats().misses, 1);

    // A load does allocate (the boxed rest of the read path), so the counter
    // above can see allocations.
    let counts = allocation_counter::measure(|| {
        let _ = poll_once(cache.get_or_load(9, |_| async { Some(90) }));
    });
    assert!(counts.count_total > 0);
}

#[tokio::test]
async fn nothing_is_read_or_loaded_before_the_first_poll() {
    let clock = MockClock::default();
    let cache = cache(&clock);

    // Made before the value exists, awaited after: the lookup happens at the poll.
    let get = cache.get(&1);
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let load = cache.get_or_load(1, move |_| async move {
        counted.fetch_add(1, Ordering::SeqCst);
        Some(99)
    });
    assert_eq!(cache.stats().l1_hits + cache.stats().misses, 0);
    cache.set(1, 10).await.expect("set");
    assert_eq!(get.await.expect("get"), Some(10));
    assert_eq!(load.await.expect("load"), Some(10));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the value was there: no load"
    );

    // A future dropped unpolled never runs its loader.
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    drop(cache.get_or_load(2, move |_| async move {
        counted.fetch_add(1, Ordering::SeqCst);
        None
    }));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(
        cache
            .get_or_load(2, |_| async { None })
            .await
            .expect("load"),
        None
    );
}
