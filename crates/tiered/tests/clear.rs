//! `clear` against a real redis-server: one round trip empties the namespace on
//! every instance (the clear epoch), instances that start later or were away
//! learn it, and a clear made during an outage is replayed.

use std::time::Duration;

use cache_core::{Clock, Entry, Store, SystemClock, Timestamp};
use cache_store_memory::MemoryStore;
use cache_store_redis::RedisStore;
use cache_testkit::{FaultProxy, RedisServer, Reply, eventually};
use cache_tiered::TieredStore;

type Tiered = TieredStore<String, u32>;

fn tiered(url: String, bus: bool) -> Tiered {
    let l1 = MemoryStore::builder()
        .max_entries(1_000)
        .build()
        .expect("l1");
    let l2 = RedisStore::builder()
        .url(url)
        .namespace("clear")
        .connect_timeout(Duration::from_millis(200))
        .reconnect_backoff(Duration::from_millis(10))
        .build()
        .expect("l2");
    TieredStore::builder(l1)
        .l2(l2)
        .invalidation_bus(bus)
        .bus_keepalive(Duration::from_millis(50))
        .build()
        .expect("build")
}

fn made_at(v: u32, at: Timestamp) -> Entry<u32> {
    Entry::new(v, at, Duration::from_secs(60))
}

async fn value(store: &Tiered, key: &str) -> Option<u32> {
    store
        .get(&key.to_owned())
        .await
        .expect("get")
        .and_then(Entry::into_value)
}

/// Raw L2 bytes for `key` are still there (clear scans nothing).
fn physically_in_l2(store: &Tiered, server: &RedisServer, key: &str) -> bool {
    let redis_key = store
        .l2()
        .expect("l2")
        .redis_key(&key.to_owned())
        .expect("key");
    let mut raw = server.connect().expect("raw");
    raw.cmd(&["EXISTS", &redis_key]).expect("exists") == Reply::Int(1)
}

#[tokio::test]
async fn one_clear_empties_both_tiers_on_every_instance() {
    let server = RedisServer::start().expect("redis");
    let a = tiered(server.url(), true);
    let b = tiered(server.url(), true);
    eventually("both buses connect", || {
        a.bus_connected() && b.bus_connected()
    })
    .await;
    let before = SystemClock.now();
    for (i, k) in ["k1", "k2", "k3"].into_iter().enumerate() {
        a.put(k.into(), made_at(i as u32, before))
            .await
            .expect("put");
        assert!(value(&b, k).await.is_some(), "b reads {k} through L2");
    }
    assert_eq!(b.l1().len(), 3);

    a.clear().await.expect("clear");
    assert!(a.l1().is_empty(), "the clearing instance's L1 at once");
    assert!(a.clear_epoch() > before);
    eventually("b drops its copies", || b.l1().is_empty()).await;
    assert_eq!(b.clear_epoch(), a.clear_epoch());
    for k in ["k1", "k2", "k3"] {
        assert_eq!(value(&b, k).await, None, "{k} reads as cleared on b");
        assert_eq!(value(&a, k).await, None, "{k} reads as cleared on a");
    }
    assert!(
        physically_in_l2(&a, &server, "k1"),
        "nothing was scanned or deleted"
    );

    // Entries made from the epoch on are untouched, on both tiers.
    let after = a.clear_epoch();
    a.put("k1".into(), made_at(7, after)).await.expect("put");
    assert_eq!(value(&b, "k1").await, Some(7));

    // An instance that starts later, with or without a bus, learns the epoch.
    let late = tiered(server.url(), false);
    eventually("a late instance reads the epoch", || {
        late.clear_epoch() == after
    })
    .await;
    assert_eq!(value(&late, "k2").await, None);
    assert_eq!(value(&late, "k1").await, Some(7));
    assert!(b.stats().bus_messages >= 1);
}

#[tokio::test]
async fn a_clear_made_during_an_outage_is_replayed_with_its_own_time() {
    let server = RedisServer::start().expect("redis");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let a = tiered(proxy.url(), true);
    let b = tiered(server.url(), true);
    eventually("both buses connect", || {
        a.bus_connected() && b.bus_connected()
    })
    .await;
    let before = SystemClock.now();
    b.put("old".into(), made_at(1, before)).await.expect("put");
    assert_eq!(value(&b, "old").await, Some(1));

    proxy.refuse();
    proxy.cut_connections();
    a.put("queued".into(), made_at(2, before))
        .await
        .expect("fail-open put");
    a.clear().await.expect("fail-open clear");
    let epoch = a.clear_epoch();
    assert_eq!(
        a.recovery_pending(),
        1,
        "the clear supersedes the queued put"
    );
    // b writes after the clear (by the clock) while a is cut off: it must survive the replay.
    b.put("new".into(), made_at(3, epoch)).await.expect("put");

    proxy.heal();
    eventually("the queue drains", || a.recovery_pending() == 0).await;
    eventually("b hears of the clear", || b.clear_epoch() == epoch).await;
    assert_eq!(value(&b, "old").await, None);
    assert_eq!(value(&b, "queued").await, None);
    assert_eq!(value(&b, "new").await, Some(3));
    assert_eq!(
        b.l2().expect("l2").clear_epoch().await.expect("epoch"),
        epoch,
        "L2 holds the time the clear was made, not the time it was replayed"
    );
}
