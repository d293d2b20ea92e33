//! A value read while its key is invalidated is not kept: a load (or an L2
//! read) that began before an invalidation may return what the invalidation
//! replaced, and caching it would serve it until it expires. Memory only, and
//! across two instances over one real Redis (the invalidation arriving by the
//! bus, before or while the loaded value is written to L2).

use std::sync::Arc;
use std::time::Duration;

use cache_testkit::{FaultProxy, RedisServer, eventually};
use resilient_cache::{Cache, Jitter};

fn memory_only() -> Cache<u64, String> {
    Cache::builder("coherence")
        .jitter(Jitter::None)
        .default_ttl(Duration::from_secs(60))
        .build()
        .expect("valid config")
}

fn over(url: &str) -> Cache<u64, String> {
    Cache::builder("coherence")
        .jitter(Jitter::None)
        .default_ttl(Duration::from_secs(60))
        .op_timeout(Duration::from_secs(2))
        // A bus read stays waiting in Redis through the test: a message
        // reaches the instance one proxy delay after it is published.
        .bus_keepalive(Duration::from_secs(30))
        .redis_url(url)
        .build()
        .expect("valid config")
}

#[tokio::test]
async fn a_remove_during_a_load_keeps_the_loaded_value_out_of_l1() {
    let cache = memory_only();
    let during = cache.clone();
    let got = cache
        .get_or_load(1, move |_| async move {
            // The source is read, then the key changes and is invalidated.
            let read = "v0".to_owned();
            during.remove(&1).await.expect("remove");
            Some(read)
        })
        .await
        .expect("load");
    // The caller gets what it loaded (the invalidation came during its call)...
    assert_eq!(got.as_deref(), Some("v0"));
    // ...but the cache does not keep it past the invalidation.
    assert_eq!(cache.get(&1).await.expect("get"), None);
    assert_eq!(cache.tiered().stats().fenced, 1);
}

#[tokio::test]
async fn a_set_during_a_load_is_not_overwritten_by_the_loaded_value() {
    let cache = memory_only();
    let during = cache.clone();
    cache
        .get_or_load(1, move |_| async move {
            let read = "v0".to_owned();
            during.set(1, "v1".to_owned()).await.expect("set");
            Some(read)
        })
        .await
        .expect("load");
    assert_eq!(cache.get(&1).await.expect("get").as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_from_another_instance_during_a_load_keeps_it_out_of_both_tiers() {
    let server = RedisServer::start().expect("redis-server");
    let (a, b) = (over(&server.url()), over(&server.url()));
    eventually("both buses connected", || {
        a.tiered().bus_connected() && b.tiered().bus_connected()
    })
    .await;
    let (on_a, on_b) = (a.clone(), b.clone());
    let got = a
        .get_or_load(1, move |_| async move {
            let read = "v0".to_owned();
            // Another instance invalidates the key; its message reaches this
            // one before the load returns.
            on_b.remove(&1).await.expect("remove");
            eventually("the bus message applied", || {
                on_a.tiered().stats().bus_messages >= 1
            })
            .await;
            Some(read)
        })
        .await
        .expect("load");
    assert_eq!(got.as_deref(), Some("v0"));
    a.shutdown(Duration::from_secs(5)).await;
    assert_eq!(a.tiered().stats().fenced, 1);
    assert_eq!(a.tiered().l1().peek_sync(&1).map(|_| ()), None, "a's L1");
    assert_eq!(b.get(&1).await.expect("get"), None, "L2 through b");
}

/// Two instances over one Redis, `a` through the fault proxy; `a` has just
/// loaded key 1 as "v0", and its connection turned 300 ms slow as the load
/// ended: its L2 write of v0 lands ~300 ms from now, the reply ~600 ms. The
/// server and proxy are returned to keep them running.
async fn loaded_with_a_slow_l2_write() -> (
    RedisServer,
    Arc<FaultProxy>,
    Cache<u64, String>,
    Cache<u64, String>,
) {
    let server = RedisServer::start().expect("redis-server");
    let proxy = Arc::new(FaultProxy::start(server.addr()).expect("proxy"));
    let (a, b) = (over(&proxy.url()), over(&server.url()));
    eventually("both buses connected", || {
        a.tiered().bus_connected() && b.tiered().bus_connected()
    })
    .await;
    let slow = proxy.clone();
    let got = a
        .get_or_load(1, move |_| async move {
            slow.set_latency(Duration::from_millis(300));
            Some("v0".to_owned())
        })
        .await
        .expect("load");
    assert_eq!(got.as_deref(), Some("v0"));
    (server, proxy, a, b)
}

/// The invalidation lands in Redis before this instance's write of the loaded
/// value (its connection turns 300 ms slow as the load ends), and its bus
/// message (on a read already waiting in Redis) arrives while that write is
/// in flight: the write is taken back once it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_that_overtakes_the_l2_write_gets_the_write_taken_back() {
    let (_server, _proxy, a, b) = loaded_with_a_slow_l2_write().await;
    // a's L1 holds v0; its L2 write lands ~300 ms from now. b invalidates at
    // once: its delete lands first, its message reaches a ~300 ms from now,
    // the write's reply ~600 ms from now.
    b.remove(&1).await.expect("remove");
    a.shutdown(Duration::from_secs(10)).await;
    assert!(a.tiered().stats().fenced >= 1, "{:?}", a.tiered().stats());
    assert_eq!(a.tiered().l1().peek_sync(&1).map(|_| ()), None, "a's L1");
    assert_eq!(b.get(&1).await.expect("get"), None, "v0 left in L2");
}

/// Emptying an instance's L1 (to free memory, or a bus gap's policy) says
/// nothing about any one key: a load whose L2 write is in flight meanwhile
/// keeps that write (taking it back would be a fleet-wide invalidation of a
/// value nobody changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptying_l1_during_the_l2_write_keeps_the_write() {
    let (_server, _proxy, a, b) = loaded_with_a_slow_l2_write().await;
    // The L2 write lands ~300 ms from now, its reply ~600 ms from now.
    a.tiered().l1().clear();
    a.shutdown(Duration::from_secs(10)).await;
    assert_eq!(a.tiered().stats().fenced, 0, "{:?}", a.tiered().stats());
    assert_eq!(b.get(&1).await.expect("get").as_deref(), Some("v0"));
}
