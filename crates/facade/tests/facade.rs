//! The facade's read path and failure model, with and without a real Redis L2.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_breaker::MockClock as BreakerClock;
use cache_core::MockClock;
use cache_testkit::{FaultProxy, RedisServer, Reply, eventually};
use resilient_cache::{
    AtomicBloomFilter, BreakerBuilder, Cache, Error, FailMode, HealthStatus, Jitter, WriteOptions,
};

mod common;
use common::{SourceDown, drive_until_breaker_closes};

/// A cache with or without a Redis L2 (the same behaviour tests run on both).
fn cache(redis: Option<&str>, clock: &MockClock) -> Cache<u64, String> {
    let b = Cache::builder("users")
        .jitter(Jitter::None)
        .default_ttl(Duration::from_secs(60))
        .negative_ttl(Duration::from_secs(10))
        .stale_window(Duration::from_secs(120))
        .op_timeout(Duration::from_secs(5))
        .clock(clock.clone());
    match redis {
        Some(url) => b.redis_url(url).build(),
        None => b.build(),
    }
    .expect("valid config")
}

async fn stampede(cache: Cache<u64, String>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..1_000 {
        let cache = cache.clone();
        let runs = runs.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(7, move |id| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some(format!("user {id}"))
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.expect("task").expect("value").as_deref(),
            Some("user 7")
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "exactly one loader run");
    let stats = cache.stats();
    assert_eq!(stats.loads, 1);
    assert_eq!(stats.coalesced + stats.l1_hits + 1, 1_000, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_run_the_loader_once_without_redis() {
    stampede(cache(None, &MockClock::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_run_the_loader_once_with_redis() {
    let server = RedisServer::start().expect("redis");
    stampede(cache(Some(&server.url()), &MockClock::default())).await;
}

async fn absent_is_cached_for_the_negative_ttl(cache: Cache<u64, String>, clock: MockClock) {
    let runs = Arc::new(AtomicUsize::new(0));
    let load = |runs: Arc<AtomicUsize>| {
        move |_id: u64| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            None::<String>
        }
    };
    assert_eq!(
        cache
            .get_or_load(404, load(runs.clone()))
            .await
            .expect("load"),
        None
    );
    assert_eq!(
        cache
            .get_or_load(404, load(runs.clone()))
            .await
            .expect("cached"),
        None
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the absent marker answered");
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        cache
            .get_or_load(404, load(runs.clone()))
            .await
            .expect("reload"),
        None
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "reloaded after the negative TTL"
    );
}

#[tokio::test]
async fn absent_keys_are_cached_for_the_negative_ttl() {
    let clock = MockClock::default();
    absent_is_cached_for_the_negative_ttl(cache(None, &clock), clock).await;
    let server = RedisServer::start().expect("redis");
    let clock = MockClock::default();
    absent_is_cached_for_the_negative_ttl(cache(Some(&server.url()), &clock), clock).await;
}

async fn stale_on_error(cache: Cache<u64, String>, clock: MockClock) {
    cache.set(1, "old".into()).await.expect("set");
    clock.advance(Duration::from_secs(61));
    let got = cache
        .try_get_or_load(1, |_| async { Err::<Option<String>, _>(SourceDown) })
        .await
        .expect("the stale value stands in");
    assert_eq!(got.as_deref(), Some("old"));
    assert_eq!(cache.stats().stale_served, 1);

    // No stale value: every coalesced caller shares the loader's error.
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let cache = cache.clone();
        let runs = runs.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .try_get_or_load(2, move |_| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Err::<Option<String>, _>(SourceDown)
                })
                .await
        }));
    }
    for t in tasks {
        let err = t.await.expect("task").expect_err("no stale value");
        assert!(err.loader_error::<SourceDown>().is_some(), "{err}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Past the stale window the old value is gone too.
    clock.advance(Duration::from_secs(121));
    let err = cache
        .try_get_or_load(1, |_| async { Err::<Option<String>, _>(SourceDown) })
        .await
        .expect_err("expired");
    assert!(matches!(err, Error::Load(_)));
}

#[tokio::test]
async fn a_failing_loader_serves_stale_or_shares_its_error() {
    let clock = MockClock::default();
    stale_on_error(cache(None, &clock), clock).await;
    let server = RedisServer::start().expect("redis");
    let clock = MockClock::default();
    stale_on_error(cache(Some(&server.url()), &clock), clock).await;
}

#[tokio::test]
async fn jittered_ttls_spread_across_the_band_in_redis() {
    let server = RedisServer::start().expect("redis");
    let cache: Cache<u64, u64> = Cache::builder("jitter")
        .redis_url(server.url())
        .default_ttl(Duration::from_secs(100))
        .stale_window(Duration::ZERO)
        .jitter(Jitter::symmetric(0.2).expect("ratio"))
        .op_timeout(Duration::from_secs(5))
        .build()
        .expect("config");
    for i in 0..200u64 {
        cache
            .get_or_load(i, |i| async move { Some(i) })
            .await
            .expect("load");
    }
    let mut raw = server.connect().expect("raw");
    // The L2 write finishes after the caller got its value.
    eventually("every value reached Redis", || {
        matches!(raw.cmd(&["DBSIZE"]), Ok(Reply::Int(200)))
    })
    .await;
    let mut ttls = Vec::new();
    for i in 0..200u64 {
        let key = format!("cache:jitter:{i}");
        match raw.cmd(&["PTTL", &key]).expect("pttl") {
            Reply::Int(ms) => ttls.push(ms),
            other => panic!("PTTL answered {other:?}"),
        }
    }
    let (min, max) = (
        ttls.iter().min().copied().unwrap_or(0),
        ttls.iter().max().copied().unwrap_or(0),
    );
    assert!(
        min >= 79_000 && max <= 120_000,
        "within ±20% of 100 s: {min}..{max}"
    );
    assert!(
        min < 88_000 && max > 112_000,
        "spread across the band: {min}..{max}"
    );
}

#[tokio::test]
async fn redis_killed_mid_load_costs_callers_nothing_and_l2_comes_back() {
    let mut server = RedisServer::start().expect("redis");
    let breaker_clock = BreakerClock::new();
    let cache: Cache<u64, String> = Cache::builder("outage")
        .redis_url(server.url())
        .breaker(
            BreakerBuilder::default()
                .consecutive_failures(3)
                .wait_in_open(Duration::from_secs(5))
                .permitted_in_half_open(1)
                .clock(breaker_clock.clone()),
        )
        .build()
        .expect("config");
    // A load in flight when Redis dies.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let in_flight = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load(1, move |_| async move {
                    let _ = started_tx.send(());
                    let _ = release_rx.await;
                    Some("loaded".to_owned())
                })
                .await
        })
    };
    started_rx.await.expect("loader started");
    server.kill();
    let _ = release_tx.send(());
    assert_eq!(
        in_flight.await.expect("task").expect("answer").as_deref(),
        Some("loaded")
    );
    for i in 2..50u64 {
        let v = cache
            .get_or_load(i, |i| async move { Some(format!("v{i}")) })
            .await;
        assert_eq!(
            v.expect("fail-open: no error").as_deref(),
            Some(format!("v{i}").as_str())
        );
    }
    assert_eq!(cache.stats().errors, 0);
    let breaker = cache.tiered().breaker().expect("breaker").clone();
    assert_eq!(breaker.state(), cache_breaker::State::Open);
    let report = cache.health().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert!(
        serde_json::to_string(&report)
            .expect("json")
            .contains("\"degraded\"")
    );

    server.restart().expect("restart");
    let back =
        drive_until_breaker_closes(&cache, &breaker_clock, Duration::from_secs(5), 1_001).await;
    assert!(back, "the breaker closed once Redis returned");
    cache.set(5_000, "after".into()).await.expect("set");
    let mut raw = server.connect().expect("raw");
    let exists = raw.cmd(&["EXISTS", "cache:outage:5000"]).expect("exists");
    assert_eq!(exists, Reply::Int(1), "L2 is written again");
    assert_eq!(cache.health().await.status, HealthStatus::Healthy);
}

#[tokio::test]
async fn redis_latency_above_the_op_timeout_costs_at_most_the_timeout() {
    let server = RedisServer::start().expect("redis");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let cache: Cache<u64, u64> = Cache::builder("slow")
        .redis_url(proxy.url())
        .op_timeout(Duration::from_millis(100))
        .build()
        .expect("config");
    cache
        .get_or_load(0, |i| async move { Some(i) })
        .await
        .expect("warm up the connection");
    proxy.set_latency(Duration::from_millis(2_000));
    let started = Instant::now();
    let v = cache
        .get_or_load(1, |i| async move { Some(i) })
        .await
        .expect("fail-open");
    let took = started.elapsed();
    assert_eq!(v, Some(1));
    assert!(
        took < Duration::from_millis(1_000),
        "bounded by the op timeout, not the 2 s latency: {took:?}"
    );
    assert!(cache.tiered().stats().l2_timeouts >= 1);
}

#[tokio::test]
async fn removals_and_tag_invalidations_reach_the_other_instance() {
    let server = RedisServer::start().expect("redis");
    let clock = MockClock::default();
    let a = cache(Some(&server.url()), &clock);
    let b = cache(Some(&server.url()), &clock);
    eventually("both buses subscribe", || {
        a.tiered().bus_connected() && b.tiered().bus_connected()
    })
    .await;
    a.set_with(1, "one".into(), WriteOptions::new().tags(["team"]))
        .await
        .expect("set");
    a.set(2, "two".into()).await.expect("set");
    assert_eq!(b.get(&1).await.expect("get").as_deref(), Some("one"));
    assert_eq!(b.get(&2).await.expect("get").as_deref(), Some("two"));

    a.remove(&2).await.expect("remove");
    eventually("b drops 2", || b.tiered().l1().peek_sync(&2).is_none()).await;
    assert_eq!(b.get(&2).await.expect("get"), None);
    a.invalidate_tag("team").await.expect("tag");
    eventually("b drops 1", || b.tiered().l1().peek_sync(&1).is_none()).await;
    assert_eq!(b.get(&1).await.expect("get"), None);
}

#[tokio::test]
async fn corrupt_l2_bytes_are_a_miss() {
    let server = RedisServer::start().expect("redis");
    let clock = MockClock::default();
    let cache = cache(Some(&server.url()), &clock);
    let mut raw = server.connect().expect("raw");
    raw.cmd(&["SET", "cache:users:9", "not an envelope"])
        .expect("set");
    let v = cache
        .get_or_load(9, |_| async { Some("fresh".to_owned()) })
        .await
        .expect("load");
    assert_eq!(v.as_deref(), Some("fresh"));
    assert_eq!(cache.tiered().l2().expect("l2").stats().decode_errors, 1);
}

#[tokio::test]
async fn the_bloom_guard_answers_unknown_keys_without_loading() {
    let filter = AtomicBloomFilter::with_rate(1_000, 0.01).expect("filter");
    filter.insert(&1u64);
    let cache: Cache<u64, String> = Cache::builder("guarded")
        .bloom_guard(filter)
        .build()
        .expect("config");
    let runs = Arc::new(AtomicUsize::new(0));
    for id in [1u64, 999_999] {
        let runs = runs.clone();
        let _ = cache
            .get_or_load(id, move |id| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Some(format!("{id}"))
            })
            .await
            .expect("answer");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "only the known key reached the loader"
    );
    assert_eq!(cache.stats().bloom_rejections, 1);
}

#[tokio::test]
async fn soft_and_hard_load_timeouts() {
    let clock = MockClock::default();
    let cache: Cache<u64, String> = Cache::builder("timeouts")
        .jitter(Jitter::None)
        .default_ttl(Duration::from_secs(60))
        .load_soft_timeout(Duration::from_millis(50))
        .load_hard_timeout(Duration::from_secs(5))
        .clock(clock.clone())
        .build()
        .expect("config");
    cache.set(1, "old".into()).await.expect("set");
    clock.advance(Duration::from_secs(61));
    let slow = |v: &'static str| {
        move |_| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Some(v.to_owned())
        }
    };
    let got = cache
        .get_or_load(1, slow("new"))
        .await
        .expect("stale after the soft timeout");
    assert_eq!(got.as_deref(), Some("old"));
    eventually("the background load lands", || {
        cache
            .tiered()
            .l1()
            .peek_sync(&1)
            .and_then(|e| e.into_value())
            .as_deref()
            == Some("new")
    })
    .await;

    let hard: Cache<u64, String> = Cache::builder("hard")
        .load_hard_timeout(Duration::from_millis(50))
        .build()
        .expect("config");
    let err = hard
        .get_or_load(1, slow("never"))
        .await
        .expect_err("no stale value");
    assert!(matches!(err, Error::LoadTimeout(_)), "{err}");
}

#[tokio::test]
async fn fail_closed_surfaces_redis_faults() {
    let mut server = RedisServer::start().expect("redis");
    let cache: Cache<u64, u64> = Cache::builder("closed")
        .redis_url(server.url())
        .fail_mode(FailMode::Closed)
        .build()
        .expect("config");
    server.kill();
    let err = cache
        .get_or_load(1, |i| async move { Some(i) })
        .await
        .expect_err("surfaced");
    assert!(matches!(err, Error::Cache(_)), "{err}");
    assert_eq!(cache.health().await.status, HealthStatus::Unhealthy);
}

#[test]
fn invalid_configuration_fails_at_build() {
    let field =
        |r: Result<Cache<u64, u64>, cache_core::ConfigError>| r.expect_err("invalid").field();
    assert_eq!(field(Cache::builder("bad name").build()), "name");
    assert_eq!(
        field(Cache::builder("ok").default_ttl(Duration::ZERO).build()),
        "default_ttl"
    );
    assert_eq!(
        field(Cache::builder("ok").max_entries(0).build()),
        "max_entries"
    );
    assert_eq!(
        field(
            Cache::builder("ok")
                .load_soft_timeout(Duration::from_secs(2))
                .load_hard_timeout(Duration::from_secs(1))
                .build()
        ),
        "load_soft_timeout"
    );
    assert_eq!(
        field(Cache::builder("ok").redis_url("http://x").build()),
        "url"
    );
    assert_eq!(
        field(
            Cache::builder("ok")
                .op_timeout(Duration::ZERO)
                .redis_url("redis://h")
                .build()
        ),
        "op_timeout"
    );
    // An L2 with the bus needs a runtime to listen in; without one that is a clear error.
    assert_eq!(
        field(Cache::builder("ok").redis_url("redis://h").build()),
        "invalidation_bus"
    );
}

#[tokio::test]
async fn without_redis_the_health_is_healthy_and_serializes() {
    let cache = cache(None, &MockClock::default());
    cache
        .get_or_load(1, |_| async { Some("x".to_owned()) })
        .await
        .expect("load");
    cache
        .get_or_load(1, |_| async { Some("y".to_owned()) })
        .await
        .expect("hit");
    let report = cache.health().await;
    assert_eq!(report.status, HealthStatus::Healthy);
    assert_eq!(report.l1.entries, 1);
    assert!(report.l2.is_none());
    assert!((report.hit_ratio - 0.5).abs() < 1e-9);
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["status"], "healthy");
    assert_eq!(json["stats"]["loads"], 1);
}

#[tokio::test]
async fn the_cache_clock_drives_the_breaker_too() {
    let mut server = RedisServer::start().expect("redis");
    let clock = MockClock::default();
    let cache: Cache<u64, String> = Cache::builder("one_clock")
        .redis_url(server.url())
        .clock(clock.clone())
        .breaker(BreakerBuilder::default().consecutive_failures(2))
        .build()
        .expect("build");
    server.kill();
    for k in 0..5 {
        let _ = cache.get(&k).await;
    }
    let breaker = cache.tiered().breaker().expect("breaker").clone();
    assert_eq!(breaker.state().as_str(), "open");
    server.restart().expect("restart");
    // Each round moves the mock clock past the 5 s open wait; on the breaker's
    // own clock, 2 s of real time in all would never end it.
    let mut closed = false;
    for k in 0..200 {
        clock.advance(Duration::from_secs(6));
        let _ = cache.get(&(100 + k)).await;
        if breaker.state().as_str() == "closed" {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "the mock clock ended the breaker's open wait");
}

#[tokio::test]
async fn get_many_counts_every_key_as_a_request() {
    let server = RedisServer::start().expect("redis");
    let cache: Cache<u64, String> = Cache::builder("many_counted")
        .redis_url(server.url())
        .build()
        .expect("build");
    cache
        .set_many(vec![(1, "a".into()), (2, "b".into()), (3, "c".into())])
        .await
        .expect("set");
    cache.tiered().l1().remove_sync(&3);
    let before = cache.stats();
    let got = cache.get_many(&[1, 2, 3, 4]).await.expect("get_many");
    assert_eq!(
        got,
        vec![Some("a".into()), Some("b".into()), Some("c".into()), None]
    );
    let after = cache.stats();
    assert_eq!(after.l1_hits - before.l1_hits, 2, "{after:?}");
    assert_eq!(after.l2_hits - before.l2_hits, 1, "{after:?}");
    assert_eq!(after.misses - before.misses, 1, "{after:?}");
}

#[tokio::test]
async fn cache_and_tier_stats_are_snapshots_of_one_meters_object() {
    let cache: Cache<u64, String> = Cache::builder("one_meters").build().expect("build");
    cache.set(1, "a".into()).await.expect("set");
    cache
        .set_many(vec![(2, "b".into()), (3, "c".into())])
        .await
        .expect("set_many");
    cache.remove(&1).await.expect("remove");
    cache.invalidate_prefix("2").await.expect("prefix");
    assert_eq!(cache.get(&9).await.expect("miss"), None);
    let (stats, tier) = (cache.stats(), cache.tiered().stats());
    assert_eq!((stats.writes, stats.invalidations), (3, 2), "{stats:?}");
    assert_eq!((tier.writes, tier.invalidations), (3, 2), "{tier:?}");
    let shared = cache.tiered().meters();
    assert_eq!(shared.get(cache_tiered::Count::RequestMiss), stats.misses);
    assert_eq!(stats.misses, 1);
}
