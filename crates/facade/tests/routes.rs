//! Per-call routes through the tiers: skipping L1 or L2 (read, write, both) and
//! a fail mode of the call's own, on every read-through path, against a real
//! Redis with two instances.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use cache_testkit::RedisServer;
use resilient_cache::{Cache, FailMode, LoadOptions, MemoOptions, Skip, cached};

fn instance(url: &str, mode: FailMode) -> Cache<u64, String> {
    Cache::builder("routes")
        .redis_url(url)
        .fail_mode(mode)
        .connect_timeout(Duration::from_millis(200))
        .op_timeout(Duration::from_secs(2))
        .build()
        .expect("valid config")
}

/// `get_or_load_with` counting its loader runs, answering `value`.
async fn load(
    cache: &Cache<u64, String>,
    key: u64,
    options: &LoadOptions,
    value: &str,
    runs: &Arc<AtomicUsize>,
) -> Result<Option<String>, resilient_cache::Error> {
    let (runs, value) = (runs.clone(), value.to_owned());
    cache
        .get_or_load_with(key, options, move |_| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Some(value)
        })
        .await
}

/// What L2 holds for `key`, read past every L1 (skip L1 both ways).
async fn in_l2(cache: &Cache<u64, String>, key: u64) -> Option<String> {
    let peek = LoadOptions::new()
        .skip_l1(Skip::Both)
        .negative_ttl(Duration::ZERO);
    cache
        .get_or_load_with(key, &peek, |_| async { None })
        .await
        .expect("ok")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_a_tier_reads_and_writes_only_the_other() {
    let server = RedisServer::start().expect("redis-server");
    let (a, b) = (
        instance(&server.url(), FailMode::Open),
        instance(&server.url(), FailMode::Open),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let count = || runs.load(Ordering::SeqCst);

    // Skip L2's write: only this instance's L1 holds it.
    let local = LoadOptions::new().skip_l2(Skip::Write);
    assert_eq!(
        load(&a, 1, &local, "a1", &runs)
            .await
            .expect("ok")
            .as_deref(),
        Some("a1")
    );
    assert!(a.contains_key(&1));
    assert_eq!(in_l2(&b, 1).await, None, "nothing went to L2");

    // Skip L1's write: L2 holds it, this L1 does not.
    let shared = LoadOptions::new().skip_l1(Skip::Write);
    assert_eq!(
        load(&a, 2, &shared, "a2", &runs)
            .await
            .expect("ok")
            .as_deref(),
        Some("a2")
    );
    assert!(!a.contains_key(&2));
    // (L2 is written in the background after a fail-open load.)
    cache_testkit::eventually_async("L2 holds key 2", || async { in_l2(&b, 2).await.is_some() })
        .await;
    assert!(
        !b.contains_key(&2),
        "reads that skip L1's write leave it alone, whoever loaded the value"
    );

    // Skip L1's read: a forced reload past a value this instance holds.
    a.set(3, "old".into()).await.expect("set");
    let reload = LoadOptions::new().skip_l1(Skip::Read).skip_l2(Skip::Read);
    assert_eq!(
        load(&a, 3, &reload, "new", &runs)
            .await
            .expect("ok")
            .as_deref(),
        Some("new")
    );
    assert_eq!(
        a.get(&3).await.expect("ok").as_deref(),
        Some("new"),
        "and it replaced it"
    );

    // Skip L2 both ways: B loads for itself though L2 holds key 2 (and takes no lease).
    let before = count();
    let leases = b.stats().fleet_leases;
    let no_l2 = LoadOptions::new().skip_l2(Skip::Both);
    assert_eq!(
        load(&b, 2, &no_l2, "b2", &runs)
            .await
            .expect("ok")
            .as_deref(),
        Some("b2")
    );
    assert_eq!(count(), before + 1);
    assert_eq!(in_l2(&a, 2).await.as_deref(), Some("a2"), "L2 untouched");
    assert_eq!(b.stats().fleet_leases, leases, "no lease without L2");

    // Batches follow the same route.
    let got = b
        .get_many_or_load_with(&[10, 11], &local, |ids| async move {
            Ok::<_, std::io::Error>(
                ids.into_iter()
                    .map(|id| (id, format!("batch {id}")))
                    .collect::<HashMap<_, _>>(),
            )
        })
        .await
        .expect("ok");
    assert_eq!(got[0].as_deref(), Some("batch 10"));
    assert!(b.contains_key(&10));
    assert_eq!(in_l2(&a, 10).await, None, "the batch skipped L2's write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_may_pick_its_own_fail_mode() {
    let mut server = RedisServer::start().expect("redis-server");
    let open = instance(&server.url(), FailMode::Open);
    let closed = instance(&server.url(), FailMode::Closed);
    let runs = Arc::new(AtomicUsize::new(0));
    server.kill();

    let strict = LoadOptions::new().fail_mode(FailMode::Closed);
    let lenient = LoadOptions::new().fail_mode(FailMode::Open);
    let err = load(&open, 1, &strict, "v", &runs)
        .await
        .expect_err("this call is fail-closed");
    assert!(matches!(err, resilient_cache::Error::Cache(_)), "{err}");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing loaded");
    assert_eq!(
        load(&open, 1, &LoadOptions::new(), "v", &runs)
            .await
            .expect("the cache's mode")
            .as_deref(),
        Some("v")
    );
    assert!(
        load(&closed, 2, &LoadOptions::new(), "v", &runs)
            .await
            .is_err()
    );
    assert_eq!(
        load(&closed, 2, &lenient, "w", &runs)
            .await
            .expect("this call is fail-open")
            .as_deref(),
        Some("w")
    );
}

static REDIS_URL: OnceLock<String> = OnceLock::new();

static SCORES: LazyLock<Cache<u64, String>> = LazyLock::new(|| {
    Cache::builder("scores")
        .redis_url(REDIS_URL.get().expect("set by the test").clone())
        .op_timeout(Duration::from_secs(2))
        .build()
        .expect("valid config")
});

static SCORE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Private scores: this instance only (never in Redis), kept 60 s.
#[cached(cache = SCORES, ttl = 60, options = MemoOptions::new().skip_l2(Skip::Both))]
async fn score(id: u64) -> String {
    SCORE_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("score {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memoize_and_cached_take_routes_too() {
    let server = RedisServer::start().expect("redis-server");
    let _ = REDIS_URL.set(server.url());
    assert_eq!(score(4).await, "score 4");
    assert_eq!(score(4).await, "score 4");
    assert_eq!(SCORE_RUNS.load(Ordering::SeqCst), 1, "L1 answers");
    let other: Cache<u64, String> = Cache::builder("scores")
        .redis_url(server.url())
        .build()
        .expect("valid config");
    assert_eq!(in_l2(&other, 4).await, None, "never written to L2");

    let cache = instance(&server.url(), FailMode::Open);
    let peer = instance(&server.url(), FailMode::Open);
    let shared_only = MemoOptions::new().skip_l1(Skip::Write);
    let got = cache
        .memoize(5, &shared_only, async {
            Ok::<_, std::fmt::Error>("m5".to_owned())
        })
        .await
        .expect("ok");
    assert_eq!(got, "m5");
    assert!(!cache.contains_key(&5));
    cache_testkit::eventually_async("L2 holds the memoized value", || async {
        in_l2(&peer, 5).await.as_deref() == Some("m5")
    })
    .await;
}
