//! `Cache::clear` across instances on a real Redis: both tiers of every
//! instance emptied in one call, loads after it untouched.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::MockClock;
use cache_testkit::{RedisServer, eventually_async};
use resilient_cache::Cache;

fn instance(url: &str, clock: &MockClock) -> Cache<u64, String> {
    Cache::builder("cleared")
        .redis_url(url)
        .clock(clock.clone())
        .default_ttl(Duration::from_secs(600))
        .op_timeout(Duration::from_secs(2))
        .build()
        .expect("valid config")
}

async fn load(cache: &Cache<u64, String>, key: u64, runs: &Arc<AtomicUsize>) -> Option<String> {
    let runs = runs.clone();
    cache
        .get_or_load(key, move |k| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Some(format!("v{k}"))
        })
        .await
        .expect("no error")
}

async fn eventually_reads(cache: &Cache<u64, String>, key: u64, want: Option<&str>) {
    eventually_async("the read settles", || {
        let cache = cache.clone();
        async move { cache.get(&key).await.ok().flatten().as_deref() == want }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_empties_every_instance_and_later_loads_stay() {
    let server = RedisServer::start().expect("redis-server");
    // One clock for both instances: the epoch compares their times.
    let clock = MockClock::default();
    let (a, b) = (
        instance(&server.url(), &clock),
        instance(&server.url(), &clock),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    for k in 1..=3 {
        load(&a, k, &runs).await;
    }
    for k in 1..=3 {
        eventually_reads(&b, k, Some(&format!("v{k}"))).await;
    }
    assert_eq!(b.entry_count(), 3);
    assert_eq!(runs.load(Ordering::SeqCst), 3);

    a.clear().await.expect("clear");
    assert_eq!(a.entry_count(), 0);
    assert_eq!(a.get(&1).await.expect("ok"), None, "L2 reads as cleared");
    eventually_async("B's L1 is emptied by the bus", || {
        let b = b.clone();
        async move { b.entry_count() == 0 }
    })
    .await;
    for k in 1..=3 {
        assert_eq!(b.get(&k).await.expect("ok"), None, "{k} on B");
    }
    // A write in the same millisecond as the clear (the mock clock has not
    // moved) is not taken for a cleared entry anywhere.
    a.set(9, "nine".into()).await.expect("set");
    assert_eq!(b.get(&9).await.expect("ok").as_deref(), Some("nine"));

    // Loads after the clear are kept, and shared through L2 as before.
    clock.advance(Duration::from_millis(5));
    assert_eq!(load(&b, 1, &runs).await.as_deref(), Some("v1"));
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    eventually_reads(&a, 1, Some("v1")).await;
    assert_eq!(load(&a, 1, &runs).await.as_deref(), Some("v1"));
    assert_eq!(runs.load(Ordering::SeqCst), 4, "A finds B's load in L2");
    let got = a
        .get_many_or_load(&[2, 3], |ids| async move {
            Ok::<_, std::io::Error>(ids.into_iter().map(|id| (id, format!("b{id}"))).collect())
        })
        .await
        .expect("ok");
    assert_eq!(got[0].as_deref(), Some("b2"), "batches reload too");
}
