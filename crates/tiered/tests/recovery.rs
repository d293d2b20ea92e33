//! The recovery queue against real servers: writes and invalidations made while
//! Redis is unreachable (partitioned, paused, killed) reach L2 and the other
//! instances once it is back; de-duplication, order and overflow; health that
//! tells when other instances may not hear from this one.

use std::time::Duration;

use cache_core::{Clock, Entry, HealthStatus, Store, SystemClock};
use cache_store_memory::MemoryStore;
use cache_store_redis::RedisStore;
use cache_testkit::{FaultProxy, RedisServer, eventually, eventually_async};
use cache_tiered::{TieredStore, TieredStoreBuilder};

type Tiered = TieredStore<String, u32>;

fn l1() -> MemoryStore<String, u32> {
    MemoryStore::builder()
        .max_entries(1_000)
        .build()
        .expect("l1")
}

fn l2(url: String) -> RedisStore {
    RedisStore::builder()
        .url(url)
        .namespace("recovery")
        .connect_timeout(Duration::from_millis(200))
        .reconnect_backoff(Duration::from_millis(10))
        .build()
        .expect("l2")
}

fn builder(url: String) -> TieredStoreBuilder<String, u32> {
    TieredStore::builder(l1())
        .l2(l2(url))
        .bus_keepalive(Duration::from_millis(50))
}

fn tiered(url: String) -> Tiered {
    builder(url).build().expect("build")
}

/// Once both buses are connected, `b` writes `k` = 1 and `a` hears of it: a
/// read on `a` racing that message would not be backfilled (fenced), so the
/// tests read once it has arrived.
async fn b_writes_k_and_a_hears(a: &Tiered, b: &Tiered) {
    eventually("both buses connect", || {
        a.bus_connected() && b.bus_connected()
    })
    .await;
    b.put("k".into(), entry(1)).await.expect("put");
    eventually("a hears b's put", || a.stats().bus_messages >= 1).await;
}

fn entry(v: u32) -> Entry<u32> {
    Entry::new(v, SystemClock.now(), Duration::from_secs(60))
}

async fn in_l2(store: &Tiered, key: &str) -> Option<u32> {
    let l2 = store.l2().expect("l2");
    Store::<String, u32>::get(l2, &key.to_owned())
        .await
        .ok()
        .flatten()
        .and_then(Entry::into_value)
}

/// Waits until L2 holds `want` for `key`.
async fn eventually_l2(what: &str, store: &Tiered, key: &str, want: Option<u32>) {
    eventually_async(what, || async { in_l2(store, key).await == want }).await;
}

#[tokio::test]
async fn an_invalidation_made_during_a_partition_reaches_l2_and_other_instances() {
    let server = RedisServer::start().expect("redis");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let a = tiered(proxy.url());
    let b = tiered(server.url());
    b_writes_k_and_a_hears(&a, &b).await;
    assert!(a.get(&"k".to_owned()).await.expect("get").is_some());
    assert!(a.l1().peek_sync(&"k".to_owned()).is_some());
    assert!(b.l1().peek_sync(&"k".to_owned()).is_some());

    proxy.refuse();
    proxy.cut_connections();
    assert!(a.remove(&"k".to_owned()).await.expect("fail-open"));
    assert_eq!(a.recovery_pending(), 1, "the L2 part waits");
    assert!(a.l1().peek_sync(&"k".to_owned()).is_none());
    assert_eq!(in_l2(&b, "k").await, Some(1), "L2 did not hear yet");
    let health = a.health().await;
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(
        health
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("recovery queue"),
        "{health:?}"
    );

    proxy.heal();
    eventually_l2("L2 drops k once A is back", &b, "k", None).await;
    eventually("B drops its L1 copy", || {
        b.l1().peek_sync(&"k".to_owned()).is_none()
    })
    .await;
    eventually("the queue drains", || a.recovery_pending() == 0).await;
    assert_eq!(a.stats().recovery_replayed, 1);
    assert_eq!(a.stats().recovery_dropped, 0);
}

#[tokio::test]
async fn an_instance_back_from_a_partition_reads_what_it_missed_from_l2() {
    let server = RedisServer::start().expect("redis");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    // A wait far longer than the test: only the bus's reconnect can end it.
    let breaker = cache_breaker::CircuitBreaker::builder()
        .consecutive_failures(2)
        .wait_in_open(Duration::from_secs(600))
        .permitted_in_half_open(1)
        .build()
        .expect("breaker");
    let a = builder(proxy.url())
        .breaker(breaker)
        .build()
        .expect("build");
    let b = tiered(server.url());
    b_writes_k_and_a_hears(&a, &b).await;
    assert_eq!(
        a.get(&"k".to_owned())
            .await
            .expect("get")
            .and_then(Entry::into_value),
        Some(1)
    );

    // a is cut off; its L2 calls fail until its breaker opens.
    proxy.refuse();
    proxy.cut_connections();
    for i in 0..20 {
        if a.breaker().expect("breaker").state() == cache_breaker::State::Open {
            break;
        }
        let _ = a.get(&format!("probe{i}")).await;
    }
    assert_eq!(
        a.breaker().expect("breaker").state(),
        cache_breaker::State::Open
    );
    let heard = a.stats().bus_messages;
    // Meanwhile b changes k: a cannot hear it and keeps its old copy.
    b.put("k".into(), entry(2)).await.expect("put");
    assert_eq!(
        a.l1()
            .peek_sync(&"k".to_owned())
            .and_then(Entry::into_value),
        Some(1)
    );

    proxy.heal();
    eventually("a's bus replays what it missed", || {
        a.stats().bus_messages > heard
    })
    .await;
    assert!(
        a.l1().peek_sync(&"k".to_owned()).is_none(),
        "the replay dropped k"
    );
    // The reconnect ended the breaker's wait: the read probes L2 and finds
    // b's value there (before, it was skipped for the rest of the wait and the
    // caller went to the source).
    eventually_async("a reads k from L2 again", || async {
        a.get(&"k".to_owned())
            .await
            .ok()
            .flatten()
            .and_then(Entry::into_value)
            == Some(2)
    })
    .await;
    assert_eq!(
        a.breaker().expect("breaker").state(),
        cache_breaker::State::Closed
    );
}

#[tokio::test]
async fn writes_queued_during_an_outage_keep_the_last_per_key_in_order() {
    let server = RedisServer::start().expect("redis");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let a = tiered(proxy.url());
    let observer = tiered(server.url());
    observer.put("gone".into(), entry(9)).await.expect("put");

    proxy.refuse();
    proxy.cut_connections();
    for v in 1..=5 {
        a.put("k".into(), entry(v)).await.expect("fail-open put");
    }
    a.remove(&"gone".to_owned())
        .await
        .expect("fail-open remove");
    a.put("gone".into(), entry(10))
        .await
        .expect("fail-open put");
    a.remove(&"gone".to_owned())
        .await
        .expect("fail-open remove");
    assert_eq!(a.recovery_pending(), 2, "one operation per key");

    proxy.heal();
    eventually_l2("the last put of k wins", &observer, "k", Some(5)).await;
    eventually_l2("the last operation on `gone` wins", &observer, "gone", None).await;
    eventually("the queue drains", || a.recovery_pending() == 0).await;
}

#[tokio::test]
async fn a_full_queue_drops_its_oldest_operation_and_counts_it() {
    let server = RedisServer::start().expect("redis");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let a: Tiered = TieredStore::builder(l1())
        .l2(l2(proxy.url()))
        .recovery_capacity(2)
        .build()
        .expect("build");
    let observer = tiered(server.url());
    proxy.refuse();
    proxy.cut_connections();
    for k in ["x", "y", "z"] {
        a.put(k.into(), entry(1)).await.expect("fail-open put");
    }
    assert_eq!(a.recovery_pending(), 2);
    assert_eq!(a.stats().recovery_dropped, 1);
    proxy.heal();
    eventually_l2("z is replayed", &observer, "z", Some(1)).await;
    eventually_l2("y is replayed", &observer, "y", Some(1)).await;
    assert_eq!(in_l2(&observer, "x").await, None, "x was dropped");
}

#[tokio::test]
async fn writes_made_while_redis_is_killed_are_replayed_after_the_restart() {
    let mut server = RedisServer::start().expect("redis");
    let a = tiered(server.url());
    server.kill();
    a.put("k".into(), entry(7)).await.expect("fail-open put");
    Store::<String, u32>::invalidate_tag(&a, "t")
        .await
        .expect("fail-open tag");
    assert_eq!(a.recovery_pending(), 2);
    server.restart().expect("restart");
    let observer = tiered(server.url());
    eventually_l2("the put reaches the new server", &observer, "k", Some(7)).await;
    eventually("the queue drains", || a.recovery_pending() == 0).await;
}

#[tokio::test]
async fn an_invalidation_made_while_redis_is_paused_is_replayed() {
    let server = RedisServer::start().expect("redis");
    let a = tiered(server.url());
    let b = tiered(server.url());
    eventually("both buses connect", || {
        a.bus_connected() && b.bus_connected()
    })
    .await;
    a.put("k".into(), entry(1)).await.expect("put");
    assert!(b.get(&"k".to_owned()).await.expect("get").is_some());
    server
        .connect()
        .expect("raw")
        .cmd(&["CLIENT", "PAUSE", "1500"])
        .expect("pause");
    // The op timeout (100 ms) gives up on the paused server: queued.
    a.remove(&"k".to_owned()).await.expect("fail-open remove");
    assert_eq!(a.recovery_pending(), 1);
    eventually_l2("L2 drops k after the pause", &b, "k", None).await;
    eventually("B drops its L1 copy", || {
        b.l1().peek_sync(&"k".to_owned()).is_none()
    })
    .await;
}

#[tokio::test]
async fn a_bus_that_cannot_read_its_stream_makes_the_cache_degraded() {
    let server = RedisServer::start().expect("redis");
    server
        .connect()
        .expect("raw")
        .cmd(&[
            "ACL", "SETUSER", "nobus", "on", ">pw", "~*", "&*", "+@all", "-xread",
        ])
        .expect("acl");
    let url = format!("redis://nobus:pw@{}", server.addr());
    let store = tiered(url);
    store
        .put("k".into(), entry(1))
        .await
        .expect("L2 itself works");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!store.bus_connected());
    let health = store.health().await;
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    assert!(
        health
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("invalidation bus refused by Redis's ACL"),
        "the reason names the ACL: {health:?}"
    );
}
