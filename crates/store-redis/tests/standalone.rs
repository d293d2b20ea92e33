//! The Redis store against a real standalone `redis-server` (and the fault proxy).

mod common;

use std::time::{Duration, Instant};

use cache_core::{Clock, Entry, ErrorKind, HealthStatus, MockClock, Store, SystemClock};
use cache_store_redis::{Action, BusEvent, GapReason, RedisStore};
use cache_testkit::{FaultProxy, RedisServer, eventually_async};
use common::{Fixture, Raw};

async fn fixture(server: &RedisServer) -> Fixture {
    Fixture {
        builder: RedisStore::builder().url(server.url()).prefix("t"),
        raw: Raw::standalone(&server.url()).await,
    }
}

fn server() -> RedisServer {
    RedisServer::start().expect("redis-server starts (cargo xtask test installs it)")
}

#[tokio::test]
async fn values_and_absent_markers_round_trip() {
    let s = server();
    common::values_and_absent_markers_round_trip(&mut fixture(&s).await).await;
}

#[tokio::test]
async fn ttl_is_the_physical_expiry_in_milliseconds() {
    let s = server();
    common::ttl_is_the_physical_expiry_in_milliseconds(&mut fixture(&s).await).await;
}

#[tokio::test]
async fn batches_keep_order_and_report_missing_keys() {
    let s = server();
    common::batches_keep_order_and_report_missing_keys(&mut fixture(&s).await).await;
}

#[tokio::test]
async fn prefix_invalidation_of_100k_keys_stays_in_its_namespace() {
    let s = server();
    common::prefix_invalidation_stays_in_its_namespace(&mut fixture(&s).await, 100_000).await;
}

#[tokio::test]
async fn tag_invalidation_removes_10k_members() {
    let s = server();
    common::tag_invalidation_removes_every_member(&mut fixture(&s).await, 10_000).await;
}

#[tokio::test]
async fn a_write_is_removed_only_while_the_key_holds_it() {
    let s = server();
    common::a_write_is_removed_only_while_the_key_holds_it(&mut fixture(&s).await).await;
}

#[tokio::test]
async fn corrupt_bytes_are_a_counted_miss_and_deleted() {
    let s = server();
    common::corrupt_bytes_are_a_counted_miss_and_deleted(&mut fixture(&s).await).await;
}

#[tokio::test]
async fn oversized_input_is_refused_before_any_write() {
    let s = server();
    common::oversized_input_is_refused_before_any_write(&mut fixture(&s).await).await;
}

#[tokio::test]
async fn health_reports_version_role_and_latency() {
    let s = server();
    common::health_reports_version_role_and_latency(&mut fixture(&s).await).await;
}

#[tokio::test]
async fn entries_expired_by_the_store_clock_are_misses() {
    let s = server();
    let clock = MockClock::default();
    let store = RedisStore::builder()
        .url(s.url())
        .clock(clock.clone())
        .build()
        .expect("config");
    let e = Entry::new(5u32, clock.now(), Duration::from_secs(10))
        .with_stale_window(Duration::from_secs(10));
    store.put(1u32, e).await.expect("put");
    clock.advance(Duration::from_secs(15));
    let stale: Option<Entry<u32>> = store.get(&1u32).await.expect("get");
    let stale = stale.expect("a stale entry is still returned");
    assert!(!stale.is_fresh(clock.now()));
    clock.advance(Duration::from_secs(6));
    let gone: Option<Entry<u32>> = store.get(&1u32).await.expect("get");
    assert_eq!(gone, None, "past stale_until the store reports a miss");
}

#[tokio::test]
async fn latency_above_the_op_timeout_is_a_timeout() {
    let s = server();
    let proxy = FaultProxy::start(s.addr()).expect("proxy");
    let store = RedisStore::builder()
        .url(proxy.url())
        .op_timeout(Duration::from_millis(100))
        .build()
        .expect("config");
    store
        .put(
            1u32,
            Entry::new(1u32, SystemClock.now(), Duration::from_secs(60)),
        )
        .await
        .expect("put");

    proxy.set_latency(Duration::from_millis(400));
    let started = Instant::now();
    let err = Store::<u32, u32>::get(&store, &1)
        .await
        .expect_err("slow redis");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // Far below the injected latency, even on a noisy machine.
    assert!(
        started.elapsed() < Duration::from_millis(390),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(store.stats().timeouts, 1);

    proxy.heal();
    // The late reply to the timed-out request must not be mistaken for a later one.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let got: Option<Entry<u32>> = store.get(&1u32).await.expect("healed");
    assert_eq!(got.and_then(Entry::into_value), Some(1));

    proxy.black_hole();
    let err = Store::<u32, u32>::get(&store, &1)
        .await
        .expect_err("black hole");
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn reconnects_after_the_server_is_killed_and_restarted() {
    let mut s = server();
    let store = RedisStore::builder()
        .url(s.url())
        .reconnect_backoff(Duration::from_millis(20))
        .build()
        .expect("config");
    let put = |store: RedisStore, v: u32| async move {
        store
            .put(
                1u32,
                Entry::new(v, SystemClock.now(), Duration::from_secs(60)),
            )
            .await
    };
    put(store.clone(), 1).await.expect("put");
    s.kill();
    let err = Store::<u32, u32>::get(&store, &1)
        .await
        .expect_err("server down");
    assert!(err.is_backend_fault(), "{err}");
    let report = Store::<u32, u32>::health(&store).await;
    assert_eq!(report.status, HealthStatus::Unhealthy);

    s.restart().expect("restart");
    eventually_async("the store reconnects", || {
        let store = store.clone();
        async move { put(store, 2).await.is_ok() }
    })
    .await;
    let got: Option<Entry<u32>> = store.get(&1u32).await.expect("get after restart");
    assert_eq!(got.and_then(Entry::into_value), Some(2));
    let stats = store.stats();
    assert!(stats.connects >= 2, "{stats:?}");
    assert!(stats.disconnects >= 1, "{stats:?}");
}

#[tokio::test]
async fn a_pool_of_connections_serves_concurrent_callers() {
    let s = server();
    let store = RedisStore::builder()
        .url(s.url())
        .pool_size(4)
        .op_timeout(common::BULK_TIMEOUT)
        .build()
        .expect("config");
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put(i, Entry::new(i, SystemClock.now(), Duration::from_secs(60)))
                .await?;
            let got: Option<Entry<u32>> = store.get(&i).await?;
            Ok::<_, cache_core::CacheError>(got.and_then(Entry::into_value))
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.expect("task").expect("ops"), Some(i as u32));
    }
    let h = store.check().await;
    assert_eq!((h.connected, h.pool_size), (4, 4));
}

#[tokio::test]
async fn connect_fails_fast_when_nothing_listens() {
    let port = cache_testkit::free_port().expect("port");
    let started = Instant::now();
    let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn the_bus_delivers_across_instances_and_reports_a_gap_after_a_restart() {
    let mut s = server();
    let a = RedisStore::builder()
        .url(s.url())
        .namespace("bus")
        .build()
        .expect("a");
    let b = RedisStore::builder()
        .url(s.url())
        .namespace("bus")
        .build()
        .expect("b");
    let (bus_a, bus_b) = (a.bus(), b.bus());
    assert_ne!(bus_a.origin(), bus_b.origin());
    let mut sub_a = bus_a.subscribe().await;
    let mut sub_b = bus_b.subscribe().await;
    assert!(sub_a.is_connected() && sub_b.is_connected());

    let id = bus_a
        .publish(Action::Keys(vec!["user:1".into()]))
        .await
        .expect("publish");
    assert!(id.contains('-'), "a stream id: {id}");
    let event = tokio::time::timeout(Duration::from_secs(5), sub_b.recv())
        .await
        .expect("in time");
    match event {
        Some(BusEvent::Message(m)) => {
            assert_eq!(m.origin, bus_a.origin());
            assert_eq!(m.action, Action::Keys(vec!["user:1".into()]));
        }
        other => panic!("expected a message, got {other:?}"),
    }
    bus_b
        .publish(Action::Tag("catalog".into()))
        .await
        .expect("publish");
    let event = tokio::time::timeout(Duration::from_secs(5), sub_a.recv())
        .await
        .expect("in time");
    assert!(
        matches!(event, Some(BusEvent::Message(m)) if m.action == Action::Tag("catalog".into()))
    );
    // A's own first message never came back to A.
    assert_eq!(sub_a.try_recv(), None);

    // Another namespace is another stream.
    let c = RedisStore::builder()
        .url(s.url())
        .namespace("other")
        .build()
        .expect("c");
    c.bus().publish(Action::Clear).await.expect("publish");

    // A restart (empty: the test server keeps nothing) loses history for good:
    // that, and only that, is a gap.
    s.kill();
    eventually_async("the subscription notices the outage", || {
        let down = !sub_b.is_connected();
        async move { down }
    })
    .await;
    s.restart().expect("restart");
    let event = tokio::time::timeout(Duration::from_secs(10), sub_b.recv())
        .await
        .expect("in time");
    assert_eq!(event, Some(BusEvent::Gap(GapReason::ServerChanged)));
    assert!(sub_b.is_connected());
    eventually_async("publishing works again", || {
        let bus = bus_a.clone();
        async move { bus.publish(Action::Prefix("p".into())).await.is_ok() }
    })
    .await;
    let event = tokio::time::timeout(Duration::from_secs(5), sub_b.recv())
        .await
        .expect("in time");
    assert!(matches!(event, Some(BusEvent::Message(m)) if m.action == Action::Prefix("p".into())));
    assert_eq!(sub_b.status().stats().gaps, 1);
}

/// `INFO stats` counter of connections the server accepted.
fn connections_received(s: &RedisServer) -> u64 {
    let info = s
        .connect()
        .expect("connect")
        .cmd(&["INFO", "stats"])
        .expect("info")
        .as_text()
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received")
}

#[tokio::test]
async fn a_healthy_idle_bus_keeps_one_connection_through_many_keepalives() {
    let s = server();
    let store = RedisStore::builder().url(s.url()).build().expect("config");
    let bus = store.bus().keepalive(Duration::from_millis(20));
    let mut sub = bus.subscribe().await;
    assert!(sub.is_connected());
    let before = connections_received(&s);
    // ~75 keep-alive intervals of an idle bus.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = connections_received(&s);
    // The two INFO connections of this test itself are the only new ones.
    assert_eq!(after - before, 1, "the bus opened no new connection");
    let stats = sub.status().stats();
    assert_eq!(stats.connects, 1, "{stats:?}");
    assert_eq!(stats.gaps, 0, "{stats:?}");
    assert!(sub.is_connected());
    assert_eq!(sub.try_recv(), None, "an idle bus yields nothing");
}

/// A publisher straight on `s` and a subscription behind a fault proxy, both on
/// namespace `ns`.
async fn behind_a_proxy(
    s: &RedisServer,
    ns: &str,
) -> (RedisStore, FaultProxy, cache_store_redis::Subscription) {
    let proxy = FaultProxy::start(s.addr()).expect("proxy");
    let publisher = RedisStore::builder()
        .url(s.url())
        .namespace(ns)
        .build()
        .expect("publisher");
    let behind = RedisStore::builder()
        .url(proxy.url())
        .namespace(ns)
        .connect_timeout(Duration::from_millis(200))
        .build()
        .expect("subscriber");
    let sub = behind
        .bus()
        .keepalive(Duration::from_millis(50))
        .subscribe()
        .await;
    assert!(sub.is_connected());
    (publisher, proxy, sub)
}

/// Cuts the proxy's connections and refuses new ones until the subscription
/// notices.
async fn partition(proxy: &FaultProxy, sub: &cache_store_redis::Subscription) {
    proxy.refuse();
    proxy.cut_connections();
    eventually_async("the subscription notices the partition", || {
        let down = !sub.is_connected();
        async move { down }
    })
    .await;
}

#[tokio::test]
async fn a_bus_cut_off_by_a_partition_replays_what_it_missed_without_a_gap() {
    let s = server();
    let (publisher, proxy, mut sub) = behind_a_proxy(&s, "part").await;
    partition(&proxy, &sub).await;
    let bus = publisher.bus();
    for i in 0..5 {
        bus.publish(Action::Keys(vec![format!("k{i}")]))
            .await
            .expect("publish on the healthy side");
    }
    assert_eq!(
        sub.try_recv(),
        None,
        "nothing arrives through the partition"
    );
    proxy.heal();
    for i in 0..5 {
        let event = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("in time");
        assert_eq!(
            event,
            Some(BusEvent::Message(cache_store_redis::Invalidation {
                origin: bus.origin(),
                action: Action::Keys(vec![format!("k{i}")]),
            })),
            "message {i} replayed in order, no gap"
        );
    }
    let stats = sub.status().stats();
    assert_eq!(stats.gaps, 0, "{stats:?}");
    assert_eq!(stats.replayed, 5, "{stats:?}");
    assert!(stats.connects >= 2, "{stats:?}");
}

#[tokio::test]
async fn history_trimmed_past_a_subscription_is_a_gap() {
    let s = server();
    let (publisher, proxy, mut sub) = behind_a_proxy(&s, "trim").await;
    let bus = publisher.bus().history(10);
    bus.publish(Action::Keys(vec!["seen".into()]))
        .await
        .expect("publish");
    let first = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("in time");
    assert!(matches!(first, Some(BusEvent::Message(_))), "{first:?}");

    partition(&proxy, &sub).await;
    // Far more than the history keeps (XADD MAXLEN ~ trims whole nodes of 100).
    for i in 0..500 {
        bus.publish(Action::Keys(vec![format!("k{i}")]))
            .await
            .expect("publish");
    }
    proxy.heal();
    let event = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("in time");
    assert_eq!(event, Some(BusEvent::Gap(GapReason::HistoryTrimmed)));
}

#[tokio::test]
async fn a_subscription_started_while_redis_is_down_misses_nothing_published_after_it() {
    let mut s = server();
    let store = RedisStore::builder().url(s.url()).build().expect("config");
    s.kill();
    let mut sub = store
        .bus()
        .keepalive(Duration::from_millis(50))
        .subscribe()
        .await;
    assert!(!sub.is_connected());
    s.restart().expect("restart");
    // Published before the subscription gets through.
    let other = RedisStore::builder().url(s.url()).build().expect("config");
    let bus = other.bus();
    eventually_async("publishing works", || {
        let bus = bus.clone();
        async move { bus.publish(Action::Tag("early".into())).await.is_ok() }
    })
    .await;
    let event = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("in time");
    assert!(
        matches!(&event, Some(BusEvent::Message(m)) if m.action == Action::Tag("early".into())),
        "{event:?}"
    );
    assert_eq!(sub.status().stats().gaps, 0);
}

#[test]
fn invalid_configuration_fails_at_build() {
    let field = |b: cache_store_redis::RedisStoreBuilder| b.build().expect_err("invalid").field();
    assert_eq!(field(RedisStore::builder()), "url");
    assert_eq!(field(RedisStore::builder().url("http://localhost")), "url");
    assert_eq!(field(RedisStore::builder().url("redis://[::1")), "url");
    assert_eq!(
        field(RedisStore::builder().url("redis://h").namespace("a b")),
        "namespace"
    );
    assert_eq!(
        field(RedisStore::builder().url("redis://h").prefix("")),
        "prefix"
    );
    assert_eq!(
        field(
            RedisStore::builder()
                .url("redis://h")
                .op_timeout(Duration::ZERO)
        ),
        "op_timeout"
    );
    assert_eq!(
        field(RedisStore::builder().url("redis://h").pool_size(0)),
        "pool_size"
    );
    assert_eq!(
        field(RedisStore::builder().url("redis://h").pool_size(65)),
        "pool_size"
    );
    assert_eq!(
        field(RedisStore::builder().url("redis://h").max_value_size(0)),
        "max_value_size"
    );
    assert_eq!(
        field(RedisStore::builder().url("redis://h").max_key_len(5)),
        "max_key_len"
    );
    assert_eq!(
        field(RedisStore::builder().url("redis://h").scan_count(0)),
        "scan_count"
    );
    assert_eq!(
        field(RedisStore::builder().cluster(Vec::<String>::new())),
        "cluster"
    );
    assert_eq!(
        field(RedisStore::builder().cluster(["redis://a:1"]).pool_size(2)),
        "pool_size"
    );
    // Passwords never leak into the error message.
    let err = RedisStore::builder()
        .url("http://user:hunter2@h")
        .build()
        .expect_err("scheme");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // Valid URLs of every kind build without connecting.
    for url in [
        "redis://h",
        "redis://:pw@h:6380/3",
        "redis://user:pw@h/1",
        "redis+unix:///tmp/r.sock",
    ] {
        RedisStore::builder().url(url).build().expect(url);
    }
    let tls = RedisStore::builder().url("rediss://h:6380").build();
    assert_eq!(tls.is_ok(), cfg!(feature = "tls"), "{tls:?}");
}

#[tokio::test]
async fn clear_epoch_rises_and_is_published() {
    let s = server();
    common::clear_epoch_rises_and_is_published(&mut fixture(&s).await).await;
}

#[tokio::test]
async fn oversized_values_are_a_counted_miss_and_never_read_whole() {
    let s = server();
    common::oversized_values_are_a_counted_miss_and_never_read_whole(&mut fixture(&s).await).await;
}

#[tokio::test]
async fn bus_messages_over_the_limit_are_dropped_and_long_key_lists_are_split() {
    let s = server();
    let mut f = fixture(&s).await;
    let store = f.store("buslimit");
    let bus = store.bus();
    let mut sub = store.bus().subscribe().await;
    // Someone else's huge message on the stream: dropped, counted, not decoded.
    let mut xadd = redis::cmd("XADD");
    xadd.arg(bus.stream_key())
        .arg("*")
        .arg("m")
        .arg(vec![1u8; 10 << 20]);
    let _: String = f.raw.q(&xadd).await;
    // Our own long list of keys arrives whole, in parts under the limit.
    let keys: Vec<String> = (0..5_000).map(|i| format!("{i:0>40}")).collect();
    bus.publish(Action::Keys(keys.clone()))
        .await
        .expect("publish");
    let mut heard = Vec::new();
    while heard.len() < keys.len() {
        let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("in time");
        match event {
            Some(BusEvent::Message(m)) => match m.action {
                Action::Keys(part) => heard.extend(part),
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(heard, keys);
    let stats = sub.status().stats();
    assert_eq!(stats.dropped, 1);
    assert!(stats.messages >= 4, "split in parts: {stats:?}");
}
