//! Entries shaped by the call and by the loader: per-call options, the loader
//! context, and tags on everything the cache loads, across instances.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use cache_core::MockClock;
use cache_testkit::{RedisServer, eventually_async};
use resilient_cache::{Cache, Error, Jitter, LoadOptions, cached};

fn on_clock(clock: &MockClock) -> Cache<u64, String> {
    Cache::builder("entries")
        .jitter(Jitter::None)
        .default_ttl(Duration::from_secs(60))
        .negative_ttl(Duration::from_secs(10))
        .stale_window(Duration::from_secs(120))
        .clock(clock.clone())
        .build()
        .expect("valid config")
}

/// Counts loader runs of `key`, answering `value`.
async fn load(
    cache: &Cache<u64, String>,
    key: u64,
    options: &LoadOptions,
    runs: &Arc<AtomicUsize>,
) -> Option<String> {
    let runs = runs.clone();
    cache
        .get_or_load_with(key, options, move |ctx| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Some(format!("v{}", ctx.key()))
        })
        .await
        .expect("no error")
}

#[tokio::test]
async fn a_loader_picks_the_ttl_from_what_it_loaded() {
    let clock = MockClock::default();
    let prices = on_clock(&clock);
    let runs = Arc::new(AtomicUsize::new(0));
    let adaptive = |price: u64, runs: Arc<AtomicUsize>| {
        move |ctx: resilient_cache::LoadContext<u64, String>| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            // Volatile (expensive) items briefly, settled ones long.
            ctx.set_ttl(if price > 10 {
                Duration::from_secs(5)
            } else {
                Duration::from_secs(600)
            });
            Some(format!("price {price}"))
        }
    };
    let none = LoadOptions::new();
    prices
        .get_or_load_with(1, &none, adaptive(50, runs.clone()))
        .await
        .expect("ok");
    prices
        .get_or_load_with(2, &none, adaptive(3, runs.clone()))
        .await
        .expect("ok");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    clock.advance(Duration::from_secs(6));
    // Key 1 (5 s) is due again; key 2 (600 s) is still fresh.
    prices
        .get_or_load_with(1, &none, adaptive(50, runs.clone()))
        .await
        .expect("ok");
    prices
        .get_or_load_with(2, &none, adaptive(3, runs.clone()))
        .await
        .expect("ok");
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    clock.advance(Duration::from_secs(100));
    prices
        .get_or_load_with(2, &none, adaptive(3, runs.clone()))
        .await
        .expect("ok");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "600 s is not over after 106 s"
    );
}

#[tokio::test]
async fn per_call_options_override_the_cache() {
    let clock = MockClock::default();
    let cache = on_clock(&clock);
    let runs = Arc::new(AtomicUsize::new(0));
    let short = LoadOptions::new().ttl(Duration::from_secs(2));
    load(&cache, 1, &short, &runs).await;
    load(&cache, 2, &LoadOptions::new(), &runs).await;
    clock.advance(Duration::from_secs(3));
    load(&cache, 1, &short, &runs).await;
    load(&cache, 2, &LoadOptions::new(), &runs).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "only the 2 s entry was loaded again"
    );

    // A per-call negative TTL: absence remembered for 1 s instead of 10 s.
    let absent_runs = Arc::new(AtomicUsize::new(0));
    let brief = LoadOptions::new().negative_ttl(Duration::from_secs(1));
    for _ in 0..2 {
        let r = absent_runs.clone();
        let got = cache
            .get_or_load_with(9, &brief, move |_| async move {
                r.fetch_add(1, Ordering::SeqCst);
                None
            })
            .await
            .expect("ok");
        assert_eq!(got, None);
        clock.advance(Duration::from_millis(1_500));
    }
    assert_eq!(absent_runs.load(Ordering::SeqCst), 2);

    // A per-call hard timeout.
    let hasty = LoadOptions::new().hard_timeout(Duration::from_millis(50));
    let slow = cache
        .get_or_load_with(10, &hasty, |_| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Some("late".to_owned())
        })
        .await;
    assert!(matches!(slow, Err(Error::LoadTimeout(_))), "{slow:?}");
}

#[tokio::test]
async fn an_invalid_tag_fails_the_call_before_anything_loads() {
    let cache = on_clock(&MockClock::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let bad = LoadOptions::new().tags(["has space"]);
    let got = cache
        .get_or_load_with(1, &bad, move |_| async move {
            r.fetch_add(1, Ordering::SeqCst);
            Some("x".to_owned())
        })
        .await;
    assert!(got.is_err(), "{got:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    // The loader's own invalid tag is refused where it is set.
    let got = cache
        .get_or_load_with(2, &LoadOptions::new(), |ctx| async move {
            assert!(ctx.set_tags(["tab\there"]).is_err());
            Some("y".to_owned())
        })
        .await;
    assert_eq!(got.expect("the value still answers").as_deref(), Some("y"));
}

#[tokio::test]
async fn a_loader_sees_what_it_replaces_and_may_decline_to_cache() {
    let clock = MockClock::default();
    let cache = on_clock(&clock);
    cache.set(1, "old".to_owned()).await.expect("set");
    clock.advance(Duration::from_secs(61)); // past the TTL, within the stale window
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    let got = cache
        .get_or_load_with(1, &LoadOptions::new(), move |ctx| async move {
            *s.lock().expect("lock") = ctx.stale_value().cloned();
            assert!(ctx.stale_entry().is_some_and(|e| !e.is_absent()));
            ctx.skip_caching();
            Some("fresh but private".to_owned())
        })
        .await
        .expect("ok");
    assert_eq!(got.as_deref(), Some("fresh but private"));
    assert_eq!(seen.lock().expect("lock").as_deref(), Some("old"));
    // Not cached: the next call loads again.
    let runs = Arc::new(AtomicUsize::new(0));
    load(&cache, 1, &LoadOptions::new(), &runs).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

static REDIS_URL: OnceLock<String> = OnceLock::new();

static PROFILES: LazyLock<Cache<u64, String>> = LazyLock::new(|| {
    Cache::builder("profiles")
        .redis_url(REDIS_URL.get().expect("set by the test").clone())
        .op_timeout(Duration::from_secs(2))
        .build()
        .expect("valid config")
});

static PROFILE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = PROFILES, tags = ["user:{id}", "profiles"])]
async fn profile(id: u64) -> String {
    PROFILE_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("profile {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_on_loaded_entries_reach_every_instance() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let _ = REDIS_URL.set(url.clone());
    let instance = || instance_named("tagged", &url);
    let (a, b) = (instance(), instance());
    let runs = Arc::new(AtomicUsize::new(0));
    let user7 = LoadOptions::new().tags(["user:7"]);
    // Loaded on A, read through L2 on B: both L1 copies carry the tag.
    assert_eq!(load(&a, 7, &user7, &runs).await.as_deref(), Some("v7"));
    assert_eq!(load(&b, 7, &user7, &runs).await.as_deref(), Some("v7"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A batch with tags, on A; B reads it from L2.
    let team = LoadOptions::new().tags(["team:1"]);
    let got = a
        .get_many_or_load_with(&[1, 2], &team, |ids| async move {
            Ok::<_, std::io::Error>(
                ids.into_iter()
                    .map(|id| (id, format!("member {id}")))
                    .collect::<HashMap<_, _>>(),
            )
        })
        .await
        .expect("ok");
    assert_eq!(got.len(), 2);
    // (L2 is written in the background after a load.)
    eventually_async("B reads the batch from L2", || {
        let b = b.clone();
        async move { b.get(&1).await.ok().flatten().as_deref() == Some("member 1") }
    })
    .await;

    // Invalidated on B: gone from B, from L2 and (through the bus) from A.
    assert_eq!(b.invalidate_tag("user:7").await.expect("ok"), 1);
    assert_eq!(b.invalidate_tag("team:1").await.expect("ok"), 2);
    assert_eq!(b.get(&7).await.expect("ok"), None);
    eventually_async("A dropped the tagged entries", || {
        let a = a.clone();
        async move {
            a.get(&7).await.ok() == Some(None)
                && a.get(&1).await.ok() == Some(None)
                && a.get(&2).await.ok() == Some(None)
        }
    })
    .await;

    // `#[cached(tags = ...)]`: tags built from the arguments.
    assert_eq!(profile(5).await, "profile 5");
    assert_eq!(profile(5).await, "profile 5");
    assert_eq!(PROFILE_RUNS.load(Ordering::SeqCst), 1);
    let other = instance_named("profiles", &url);
    eventually_async("another instance reads the profile from L2", || {
        let other = other.clone();
        async move { other.get(&5).await.ok().flatten().as_deref() == Some("profile 5") }
    })
    .await;
    assert_eq!(PROFILES.invalidate_tag("user:5").await.expect("ok"), 1);
    assert_eq!(profile(5).await, "profile 5");
    assert_eq!(
        PROFILE_RUNS.load(Ordering::SeqCst),
        2,
        "the tag invalidated it"
    );
}

fn instance_named(name: &str, url: &str) -> Cache<u64, String> {
    Cache::builder(name)
        .redis_url(url)
        // Generous: these tests count loads across instances, and a lease
        // attempt timing out on a busy machine would load twice.
        .op_timeout(Duration::from_secs(2))
        .build()
        .expect("valid config")
}

#[test]
fn a_weigher_for_other_types_is_refused_at_build() {
    let built = Cache::builder("weighed")
        .max_weight(1_000)
        .weigher(|_: &String, v: &String| v.len() as u64)
        .build::<u64, String>();
    let err = built.expect_err("the weigher's key type is not the cache's");
    assert_eq!(err.field(), "weigher");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_to_live_and_contains_key_across_instances() {
    let server = RedisServer::start().expect("redis-server");
    let (a, b) = (
        instance_named("ttl", &server.url()),
        instance_named("ttl", &server.url()),
    );
    a.set_with(
        3,
        "x".to_owned(),
        resilient_cache::WriteOptions::new().ttl(Duration::from_secs(30)),
    )
    .await
    .expect("set");
    assert!(a.contains_key(&3));
    assert!(
        !b.contains_key(&3),
        "contains_key is local: B's L1 has nothing"
    );
    // B's answer comes from L2.
    let left = b.time_to_live(&3).await.expect("ok").expect("in L2");
    assert!(
        left > Duration::from_secs(20) && left <= Duration::from_secs(36),
        "{left:?}"
    );
    assert_eq!(b.time_to_live(&4).await.expect("ok"), None);
    assert_eq!(a.entry_count(), 1);
    assert_eq!(a.invalidate_entries_if(|k, _| *k == 3), 1);
    assert!(!a.contains_key(&3));
}

type Heard = Arc<std::sync::Mutex<Vec<(u64, Option<String>, resilient_cache::RemovalCause)>>>;

fn listened(clock: &MockClock, url: Option<&str>) -> (Cache<u64, String>, Heard) {
    let heard: Heard = Arc::default();
    let log = heard.clone();
    let mut builder = Cache::builder("listened")
        .jitter(Jitter::None)
        .default_ttl(Duration::from_secs(60))
        .time_to_idle(Duration::from_secs(10))
        .clock(clock.clone())
        .eviction_listener(move |k: u64, v: Option<String>, cause| {
            log.lock().expect("lock").push((k, v, cause));
        });
    if let Some(url) = url {
        builder = builder.redis_url(url);
    }
    (builder.build().expect("valid config"), heard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eviction_listener_hears_every_cause_across_instances() {
    use resilient_cache::RemovalCause::{Expired, Explicit, Replaced};
    let server = RedisServer::start().expect("redis-server");
    let clock = MockClock::default();
    let (a, heard) = listened(&clock, Some(&server.url()));
    let (b, _) = listened(&clock, Some(&server.url()));
    let take = || std::mem::take(&mut *heard.lock().expect("lock"));

    a.set(1, "one".into()).await.expect("set");
    a.set(1, "uno".into()).await.expect("set");
    assert_eq!(take(), [(1, Some("one".into()), Replaced)]);

    // Removed by another instance: heard when the bus message arrives.
    b.remove(&1).await.expect("remove");
    eventually_async("A hears B's removal", || {
        let heard = heard.clone();
        async move { !heard.lock().expect("lock").is_empty() }
    })
    .await;
    assert_eq!(take(), [(1, Some("uno".into()), Explicit)]);

    // Idle for longer than the time to idle: expired, though its TTL is 60 s.
    a.set(2, "two".into()).await.expect("set");
    a.set(3, "three".into()).await.expect("set");
    clock.advance(Duration::from_secs(6));
    assert!(a.contains_key(&2), "read at 6 s");
    assert_eq!(a.get(&2).await.expect("ok").as_deref(), Some("two"));
    clock.advance(Duration::from_secs(6));
    assert!(a.contains_key(&2), "read 6 s ago");
    assert!(!a.contains_key(&3), "idle for 12 s");
    let _ = a.get(&3).await; // met and dropped (L2 still holds it: TTL 60 s)
    let expired = take();
    assert!(
        expired.contains(&(3, Some("three".into()), Expired)),
        "{expired:?}"
    );
    a.clear().await.expect("clear");
    assert!(take().iter().all(|(_, _, cause)| *cause == Explicit));
}

#[test]
fn a_listener_for_other_types_is_refused_at_build() {
    let built = Cache::builder("listened")
        .eviction_listener(|_: String, _: Option<String>, _| {})
        .build::<u64, String>();
    let err = built.expect_err("the listener's key type is not the cache's");
    assert_eq!(err.field(), "eviction_listener");
}
