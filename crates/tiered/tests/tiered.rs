//! The tiered store against a real redis-server: backfill, fail-open / fail-closed,
//! breaker recovery, and L1 coherence across two instances over the bus.

use std::time::Duration;

use cache_breaker::{CircuitBreaker, MockClock as BreakerClock, State};
use cache_core::{Clock, Entry, ErrorKind, Store, SystemClock};
use cache_store_memory::MemoryStore;
use cache_store_redis::RedisStore;
use cache_testkit::{RedisServer, eventually};
use cache_tiered::{FailMode, GapPolicy, TieredStore};

type Tiered = TieredStore<String, u32>;

fn l1() -> MemoryStore<String, u32> {
    MemoryStore::builder()
        .max_entries(1_000)
        .build()
        .expect("l1")
}

fn l2(server: &RedisServer) -> RedisStore {
    RedisStore::builder()
        .url(server.url())
        .namespace("tiered")
        .reconnect_backoff(Duration::from_millis(10))
        .build()
        .expect("l2")
}

fn entry(v: u32) -> Entry<u32> {
    Entry::new(v, SystemClock.now(), Duration::from_secs(60))
}

async fn wait_for_bus(store: &Tiered) {
    eventually("the bus listener subscribes", || store.bus_connected()).await;
}

#[tokio::test]
async fn an_l2_hit_backfills_l1_and_writes_reach_both_tiers() {
    let server = RedisServer::start().expect("redis");
    let store: Tiered = TieredStore::builder(l1())
        .l2(l2(&server))
        .build()
        .expect("build");
    store.put("a".into(), entry(1)).await.expect("put");
    assert_eq!(store.l1().len(), 1);
    let in_l2: Option<Entry<u32>> = store
        .l2()
        .expect("l2")
        .get(&"a".to_owned())
        .await
        .expect("l2 get");
    assert!(in_l2.is_some(), "written through to Redis");

    store.l1().clear();
    let got = store.get(&"a".to_owned()).await.expect("get");
    assert_eq!(got.and_then(Entry::into_value), Some(1));
    assert_eq!(store.stats().l2_hits, 1);
    assert_eq!(store.l1().len(), 1, "backfilled");
    let again = store.get(&"a".to_owned()).await.expect("get");
    assert!(again.is_some());
    assert_eq!(store.stats().l1_hits, 1);

    assert!(store.remove(&"a".to_owned()).await.expect("remove"));
    assert!(store.get(&"a".to_owned()).await.expect("get").is_none());
    let many = store
        .get_many(&["x".to_owned(), "y".to_owned()])
        .await
        .expect("get_many");
    assert_eq!(many, vec![None, None]);
}

#[tokio::test]
async fn redis_down_is_a_miss_in_fail_open_mode_and_the_breaker_recovers() {
    let mut server = RedisServer::start().expect("redis");
    let clock = BreakerClock::new();
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(3)
        .wait_in_open(Duration::from_secs(5))
        .permitted_in_half_open(1)
        .clock(clock.clone())
        .build()
        .expect("breaker");
    let store: Tiered = TieredStore::builder(l1())
        .l2(l2(&server))
        .breaker(breaker)
        .build()
        .expect("build");
    store.put("kept".into(), entry(1)).await.expect("put");
    server.kill();

    for i in 0..10u32 {
        let miss = store
            .get(&format!("cold{i}"))
            .await
            .expect("fail-open: no error");
        assert_eq!(miss, None);
    }
    store
        .put("during".into(), entry(2))
        .await
        .expect("writes are not thrown");
    let kept = store
        .get(&"kept".to_owned())
        .await
        .expect("L1 still serves");
    assert_eq!(kept.and_then(Entry::into_value), Some(1));
    let breaker = store.breaker().expect("breaker");
    assert_eq!(breaker.state(), State::Open);
    let stats = store.stats();
    assert_eq!(
        stats.l2_errors, 3,
        "the breaker opened after 3 failures: {stats:?}"
    );
    assert!(stats.l2_rejected >= 8, "then L2 was skipped: {stats:?}");
    assert!(stats.fail_open >= 11, "{stats:?}");
    let report = Store::<String, u32>::health(&store).await;
    assert_eq!(report.status, cache_core::HealthStatus::Degraded);

    server.restart().expect("restart");
    clock.advance(Duration::from_secs(5));
    // The first call after the wait is the probe; it reaches the restarted Redis.
    let mut recovered = false;
    for _ in 0..200 {
        let _ = store.get(&"probe".to_owned()).await.expect("get");
        if breaker.state() == State::Closed {
            recovered = true;
            break;
        }
        clock.advance(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recovered, "the breaker closed again once Redis was back");
    // The write made during the outage was queued and is replayed; writes queue
    // behind it until it is through, so wait for the queue to drain.
    eventually("the recovery queue drains", || {
        store.recovery_pending() == 0
    })
    .await;
    assert!(store.stats().recovery_replayed >= 1, "{:?}", store.stats());
    store.put("after".into(), entry(3)).await.expect("put");
    store.l1().clear();
    let after = store.get(&"after".to_owned()).await.expect("get");
    assert_eq!(
        after.and_then(Entry::into_value),
        Some(3),
        "L2 is used again"
    );
}

#[tokio::test]
async fn fail_closed_mode_surfaces_the_fault() {
    let mut server = RedisServer::start().expect("redis");
    let store: Tiered = TieredStore::builder(l1())
        .l2(l2(&server))
        .fail_mode(FailMode::Closed)
        .build()
        .expect("build");
    server.kill();
    let err = store
        .get(&"k".to_owned())
        .await
        .expect_err("fault surfaces");
    assert!(err.is_backend_fault(), "{err}");
    let err = store
        .put("k".into(), entry(1))
        .await
        .expect_err("write fault surfaces");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn without_l2_the_store_is_a_complete_l1_cache() {
    let store: Tiered = TieredStore::builder(l1())
        .build()
        .expect("build without a runtime need");
    store.put("a".into(), entry(1)).await.expect("put");
    assert_eq!(
        store
            .get(&"a".to_owned())
            .await
            .expect("get")
            .and_then(Entry::into_value),
        Some(1)
    );
    assert_eq!(
        Store::<String, u32>::invalidate_prefix(&store, "a")
            .await
            .expect("prefix"),
        1
    );
    // The batch paths too: L1 alone holds and drops them.
    store
        .put_many(vec![("b".into(), entry(2)), ("c".into(), entry(3))])
        .await
        .expect("put_many");
    let got = store
        .get_many(&["b".to_owned(), "c".to_owned()])
        .await
        .expect("get_many");
    assert_eq!(
        got.into_iter()
            .map(|e| e.and_then(Entry::into_value))
            .collect::<Vec<_>>(),
        vec![Some(2), Some(3)]
    );
    assert_eq!(
        store
            .remove_many(&["b".to_owned(), "x".to_owned()])
            .await
            .expect("remove_many"),
        1
    );
    assert!(store.get(&"b".to_owned()).await.expect("get").is_none());
    assert_eq!(
        Store::<String, u32>::health(&store).await.status,
        cache_core::HealthStatus::Healthy
    );
}

#[tokio::test]
async fn other_instances_drop_their_l1_copies() {
    let server = RedisServer::start().expect("redis");
    let a: Tiered = TieredStore::builder(l1())
        .l2(l2(&server))
        .build()
        .expect("a");
    let b: Tiered = TieredStore::builder(l1())
        .l2(l2(&server))
        .build()
        .expect("b");
    wait_for_bus(&a).await;
    wait_for_bus(&b).await;

    let tagged = |v| entry(v).with_tags(["group"]).expect("tag");
    a.put("k1".into(), tagged(1)).await.expect("put");
    a.put("k2".into(), tagged(2)).await.expect("put");
    a.put("p:1".into(), entry(3)).await.expect("put");
    for k in ["k1", "k2", "p:1"] {
        assert!(
            b.get(&k.to_owned()).await.expect("get").is_some(),
            "b reads {k} via L2"
        );
    }
    assert_eq!(b.l1().len(), 3);

    a.remove(&"k1".to_owned()).await.expect("remove");
    eventually("b drops k1", || {
        b.l1().peek_sync(&"k1".to_owned()).is_none()
    })
    .await;
    Store::<String, u32>::invalidate_tag(&a, "group")
        .await
        .expect("tag");
    eventually("b drops the tagged k2", || {
        b.l1().peek_sync(&"k2".to_owned()).is_none()
    })
    .await;
    Store::<String, u32>::invalidate_prefix(&a, "p:")
        .await
        .expect("prefix");
    eventually("b drops p:1", || b.l1().is_empty()).await;
    // An overwrite on A is not served from B's old copy either.
    a.put("k3".into(), entry(30)).await.expect("put");
    assert!(b.get(&"k3".to_owned()).await.expect("get").is_some());
    a.put("k3".into(), entry(31)).await.expect("overwrite");
    eventually("b drops the old k3", || {
        b.l1().peek_sync(&"k3".to_owned()).is_none()
    })
    .await;
    let fresh = b.get(&"k3".to_owned()).await.expect("get");
    assert_eq!(fresh.and_then(Entry::into_value), Some(31));
    assert!(b.stats().bus_messages >= 4);
    assert_eq!(a.l1().len(), 1, "a's own messages do not clear its own L1");
}

/// A restart that came back empty lost the bus history: a gap, handled by the
/// policy. The default keeps L1 serving but bounds how long.
#[tokio::test]
async fn a_bus_gap_is_handled_by_the_gap_policy() {
    let mut server = RedisServer::start().expect("redis");
    let build = |policy| -> Tiered {
        TieredStore::builder(l1())
            .l2(l2(&server))
            .gap_policy(policy)
            .build()
            .expect("build")
    };
    let shorten = build(GapPolicy::Shorten(Duration::from_secs(10)));
    let revalidate = build(GapPolicy::Revalidate);
    let clear = build(GapPolicy::Clear);
    let all = [&shorten, &revalidate, &clear];
    for store in all {
        wait_for_bus(store).await;
        store.fill_l1("k".into(), entry(1)).expect("a 60 s entry");
    }
    server.kill();
    server.restart().expect("restart");
    for store in all {
        eventually("the listener reports the gap", || {
            store.stats().bus_gaps >= 1
        })
        .await;
    }
    let now = SystemClock.now();
    let kept = shorten.l1().peek_sync(&"k".to_owned()).expect("kept");
    assert!(kept.is_fresh(now), "still served fresh for a while");
    assert!(
        kept.fresh_until() <= now.saturating_add(Duration::from_secs(10)),
        "but not for its 60 s any more"
    );
    let stale = revalidate.l1().peek_sync(&"k".to_owned()).expect("kept");
    assert!(
        !stale.is_fresh(now),
        "must be read again before it is served"
    );
    assert!(!stale.is_expired(now), "still a fail-safe fallback");
    assert!(clear.l1().is_empty());
}

#[tokio::test]
async fn a_healthy_bus_watched_over_many_keepalives_declares_no_gap() {
    let server = RedisServer::start().expect("redis");
    let store: Tiered = TieredStore::builder(l1())
        .l2(l2(&server))
        .bus_keepalive(Duration::from_millis(20))
        .build()
        .expect("build");
    wait_for_bus(&store).await;
    for i in 0..50 {
        store.fill_l1(format!("k{i}"), entry(i)).expect("fill");
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let stats = store.stats();
    assert_eq!((stats.bus_gaps, stats.bus_reconnects), (0, 0), "{stats:?}");
    assert_eq!(store.l1().len(), 50, "L1 untouched");
    assert!(store.bus_connected());
}

/// An L1 whose entries weigh their value, holding at most 1,000.
fn weighing_l1() -> MemoryStore<String, u32> {
    MemoryStore::builder()
        .max_entries(100)
        .shards(1)
        .max_weight(1_000)
        .weigher(|_, v: &u32| u64::from(*v))
        .build()
        .expect("l1")
}

#[tokio::test]
async fn a_value_l1_refuses_still_replaces_the_old_copy_on_every_instance() {
    let server = RedisServer::start().expect("redis");
    let a: Tiered = TieredStore::builder(weighing_l1())
        .l2(l2(&server))
        .build()
        .expect("a");
    let b: Tiered = TieredStore::builder(weighing_l1())
        .l2(l2(&server))
        .build()
        .expect("b");
    wait_for_bus(&a).await;
    wait_for_bus(&b).await;
    a.put("k".into(), entry(1)).await.expect("put");
    assert!(b.get(&"k".to_owned()).await.expect("get").is_some());
    assert!(b.l1().peek_sync(&"k".to_owned()).is_some());

    let refused = a.put("k".into(), entry(5_000)).await;
    assert!(refused.is_err(), "L1 cannot hold it: {refused:?}");
    assert!(
        a.l1().peek_sync(&"k".to_owned()).is_none(),
        "the old copy is not served here"
    );
    eventually("b drops its old copy", || {
        b.l1().peek_sync(&"k".to_owned()).is_none()
    })
    .await;
    let got = b.get(&"k".to_owned()).await.expect("get");
    assert_eq!(got.and_then(Entry::into_value), Some(5_000), "from L2");
}

#[tokio::test]
async fn a_stale_l2_entry_is_a_counted_miss_that_comes_back_for_stale_on_error() {
    let server = RedisServer::start().expect("redis");
    let clock = cache_core::MockClock::default();
    let l1 = MemoryStore::builder()
        .max_entries(1_000)
        .clock(clock.clone())
        .build()
        .expect("l1");
    let l2 = RedisStore::builder()
        .url(server.url())
        .namespace("tiered")
        .clock(clock.clone())
        .build()
        .expect("l2");
    let store: Tiered = TieredStore::builder(l1)
        .l2(l2)
        .invalidation_bus(false)
        .build()
        .expect("build");
    let short = Entry::new(7, clock.now(), Duration::from_secs(1))
        .with_stale_window(Duration::from_secs(60));
    store.put("k".into(), short).await.expect("put");
    store.l1().clear();
    clock.advance(Duration::from_secs(2)); // past its 1 s TTL, inside the stale window
    match store.read(&"k".to_owned(), None, |_| true).await {
        cache_tiered::TierRead::Missing { stale, fault } => {
            assert!(fault.is_none());
            assert_eq!(stale.and_then(Entry::into_value), Some(7));
        }
        other => panic!("a stale entry is not a hit: {other:?}"),
    }
    let stats = store.stats();
    assert_eq!((stats.l2_hits, stats.misses), (0, 1), "{stats:?}");
    assert!(store.l1().is_empty(), "a stale L2 entry is not backfilled");
}

/// Every request an L1 hit, none reaching L2: Redis answering a health check
/// after the breaker's open wait closes the breaker by itself.
#[tokio::test]
async fn an_idle_cache_is_healthy_again_once_redis_answers_its_health_check() {
    let mut server = RedisServer::start().expect("redis");
    let clock = BreakerClock::new();
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(2)
        .wait_in_open(Duration::from_secs(5))
        .clock(clock.clone())
        .build()
        .expect("breaker");
    // No bus: a bus that reconnects ends the open wait by itself
    // (`tests/recovery.rs`); here only the health check may.
    let store: Tiered = TieredStore::builder(l1())
        .l2(l2(&server))
        .breaker(breaker)
        .invalidation_bus(false)
        .build()
        .expect("build");
    server.kill();
    for i in 0..3 {
        let _ = store.get(&format!("cold{i}")).await;
    }
    assert_eq!(store.breaker().expect("breaker").state(), State::Open);
    server.restart().expect("restart");
    server.ping().expect("redis answers again");
    // Inside the open wait a health check changes nothing.
    assert_eq!(
        store.check().await.status,
        cache_core::HealthStatus::Degraded
    );
    assert_eq!(store.breaker().expect("breaker").state(), State::Open);
    clock.advance(Duration::from_secs(6));
    let health = store.check().await;
    assert_eq!(store.breaker().expect("breaker").state(), State::Closed);
    assert_eq!(
        health.status,
        cache_core::HealthStatus::Healthy,
        "{health:?}"
    );
}

/// The lease attempt of an instance that missed reads L2 in the same round
/// trip: a value another instance just wrote is used instead of loading again.
#[tokio::test]
async fn a_lease_attempt_sees_a_value_written_since_the_miss() {
    let server = RedisServer::start().expect("redis");
    let a: Tiered = TieredStore::builder(l1())
        .l2(l2(&server))
        .build()
        .expect("a");
    let ttl = Duration::from_secs(2);
    let key = "k".to_owned();
    // Nothing there: the lease.
    let lease = match a.lease_or_value(&key, ttl).await {
        cache_tiered::LeaseOrValue::Lease(cache_tiered::FleetLease::Acquired(l)) => l,
        other => panic!("expected the lease, got {other:?}"),
    };
    // Held by us: another attempt waits.
    assert!(matches!(
        a.lease_or_value(&key, ttl).await,
        cache_tiered::LeaseOrValue::Lease(cache_tiered::FleetLease::Held)
    ));
    // The holder writes; even before it gives the lease back, a look finds the value.
    Store::<String, u32>::put(a.l2().expect("l2"), key.clone(), entry(5))
        .await
        .expect("put");
    match a.lease_or_value(&key, ttl).await {
        cache_tiered::LeaseOrValue::Value(e) => assert_eq!(e.into_value(), Some(5)),
        other => panic!("expected the value, got {other:?}"),
    }
    a.release_lease(lease).await;
    // A value present and no lease held: the value, and no lease left behind.
    assert!(matches!(
        a.lease_or_value(&key, ttl).await,
        cache_tiered::LeaseOrValue::Value(_)
    ));
    let l2 = a.l2().expect("l2");
    assert!(!l2.lease_held(&key).await.expect("redis answers"));
}
