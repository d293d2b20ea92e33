//! A value read while its key is invalidated is not kept: a load (or an L2
//! read) that began before an invalidation may return what the invalidation
//! replaced, and caching it would serve it until it expires. Memory only, and
//! across two instances over one real Redis (the invalidation arriving by the
//! bus, before or while the loaded value is written to L2).

use std::sync::Arc;
use std::time::Duration;

use cache_testkit::{FaultProxy, RedisServer, eventually, eventually_async};
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

/// Three instances over one Redis: `a` 400 ms from it and `b` 200 ms from it
/// once the returned proxies are told so, `c` direct. The server and proxies
/// are returned to keep them running.
async fn three_instances() -> (RedisServer, [Arc<FaultProxy>; 2], [Cache<u64, String>; 3]) {
    let server = RedisServer::start().expect("redis-server");
    let to_a = Arc::new(FaultProxy::start(server.addr()).expect("proxy"));
    let to_b = Arc::new(FaultProxy::start(server.addr()).expect("proxy"));
    let caches = [over(&to_a.url()), over(&to_b.url()), over(&server.url())];
    eventually("three buses connected", || {
        caches.iter().all(|x| x.tiered().bus_connected())
    })
    .await;
    (server, [to_a, to_b], caches)
}

/// `a` loads key 1 as "v0" (tagged `t`); its connection turns 400 ms slow as
/// the load ends, so its L2 write lands ~400 ms from now and returns ~800 ms
/// from now.
async fn load_slowly(a: &Cache<u64, String>, to_a: &Arc<FaultProxy>) {
    let slow = to_a.clone();
    let options = resilient_cache::LoadOptions::new().tags(["t"]);
    let got = a
        .get_or_load_with(1, &options, move |_| async move {
            slow.set_latency(Duration::from_millis(400));
            Some("v0".to_owned())
        })
        .await
        .expect("load");
    assert_eq!(got.as_deref(), Some("v0"));
}

/// The race every cache-aside fleet has: `a` reads the source, `b` changes
/// the key and deletes it from L2, then `a`'s write of what it read lands in
/// L2, and `b`'s bus message reaches `a` only after that write returned (`b`
/// is 200 ms from Redis: its delete lands ~200 ms from now, its message is
/// published ~600 ms from now and reaches `a`, 400 ms away, at ~1,000 ms;
/// `a`'s write lands at ~400 ms and returns at ~800 ms). Without more, every
/// instance would read the old value from L2 until it expires; `a` takes its
/// write back when the message comes, because L2 still holding exactly what
/// it wrote proves the write landed after the invalidation's delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_heard_after_the_l2_write_returned_gets_the_write_taken_back() {
    let (_server, [to_a, to_b], [a, b, c]) = three_instances().await;
    load_slowly(&a, &to_a).await;
    to_b.set_latency(Duration::from_millis(200));
    b.remove(&1).await.expect("remove");
    eventually("b's message reached a", || {
        a.tiered().stats().bus_messages >= 1
    })
    .await;
    a.shutdown(Duration::from_secs(10)).await;
    assert_eq!(c.get(&1).await.expect("get"), None, "v0 left in L2");
    assert_eq!(a.tiered().stats().fenced, 1, "{:?}", a.tiered().stats());
}

/// The same race through a tag, then a prefix: `b`'s scan of the tag's
/// members (of the namespace's keys) runs before `a`'s write adds key 1, so
/// its delete misses the key altogether.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_and_prefix_invalidations_heard_after_the_l2_write_returned_get_it_taken_back() {
    for by_tag in [true, false] {
        let (_server, [to_a, to_b], [a, b, c]) = three_instances().await;
        load_slowly(&a, &to_a).await;
        to_b.set_latency(Duration::from_millis(200));
        if by_tag {
            b.invalidate_tag("t").await.expect("invalidate");
        } else {
            b.invalidate_prefix("1").await.expect("invalidate");
        }
        eventually("b's message reached a", || {
            a.tiered().stats().bus_messages >= 1
        })
        .await;
        a.shutdown(Duration::from_secs(10)).await;
        assert_eq!(c.get(&1).await.expect("get"), None, "by tag: {by_tag}");
    }
}

/// A tag invalidation that scans the tag's members before `a`'s write adds
/// key 1 to them, heard while that write is in flight (`b` is direct: its
/// message reaches `a` at ~400 ms, the write returns at ~800 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_invalidation_heard_while_the_l2_write_is_in_flight_gets_it_taken_back() {
    // Both proxies kept: dropping one stops it.
    let (_server, [to_a, _to_b], [a, b, c]) = three_instances().await;
    load_slowly(&a, &to_a).await;
    b.invalidate_tag("t").await.expect("invalidate");
    a.shutdown(Duration::from_secs(10)).await;
    assert_eq!(a.tiered().stats().bus_messages, 1, "heard while in flight");
    assert_eq!(a.tiered().stats().fenced, 1, "{:?}", a.tiered().stats());
    assert_eq!(c.get(&1).await.expect("get"), None, "v0 left in L2");
}

/// An invalidation heard after the write returned takes back only that
/// write: a newer value written since (here by the invalidation itself, a
/// `set`) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_write_of_the_key_is_never_taken_back() {
    let (_server, _proxies, [a, b, c]) = three_instances().await;
    let got = a.get_or_load(1, |_| async { Some("v0".to_owned()) }).await;
    assert_eq!(got.expect("load").as_deref(), Some("v0"));
    // a's write is in L2 (so it returned) before b writes over it.
    eventually_async("v0 in L2", || async {
        let read = b.tiered().read_l2(&1, None, |_| true).await;
        matches!(read, cache_tiered::TierRead::Fresh(..))
    })
    .await;
    b.set(1, "v1".to_owned()).await.expect("set");
    eventually("b's message reached a", || {
        a.tiered().stats().bus_messages >= 1
    })
    .await;
    a.shutdown(Duration::from_secs(10)).await;
    assert_eq!(c.get(&1).await.expect("get").as_deref(), Some("v1"));
    assert_eq!(a.tiered().stats().fenced, 0, "{:?}", a.tiered().stats());
}
