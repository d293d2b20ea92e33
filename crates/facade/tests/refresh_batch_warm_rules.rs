//! Refresh-ahead, batch get-or-load, warming and cross-entity invalidation.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::MockClock;
use cache_testkit::{RedisServer, eventually, eventually_async};
use resilient_cache::{
    Cache, ChangeEvent, Error, InvalidationRules, InvalidationTarget, Invalidator, Jitter,
    RefreshAhead, RuleError, TargetKind, WarmOptions, WarmProgress, WriteOptions, XFetch,
};

mod common;
use common::SourceDown;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn refreshing_cache(clock: &MockClock, policy: RefreshAhead) -> Cache<u64, String> {
    Cache::builder("refresh")
        .jitter(Jitter::None)
        .default_ttl(Duration::from_secs(100))
        .stale_window(Duration::from_secs(120))
        .refresh_ahead(policy)
        .clock(clock.clone())
        .build()
        .expect("config")
}

fn l1_value(cache: &Cache<u64, String>, key: u64) -> Option<String> {
    cache
        .tiered()
        .l1()
        .peek_sync(&key)
        .and_then(|e| e.into_value())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_under_1000_readers_and_none_of_them_waits() {
    let clock = MockClock::default();
    let cache = refreshing_cache(&clock, RefreshAhead::Threshold(0.2));
    let first = cache
        .get_or_load(1, |_| async { Some("v1".to_owned()) })
        .await;
    assert_eq!(first.expect("load").as_deref(), Some("v1"));

    // 85 s into a 100 s TTL: inside the last 20 %.
    clock.advance(Duration::from_secs(85));
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let readers: Vec<_> = (0..1_000)
        .map(|_| {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(1, move |_| {
                        calls.fetch_add(1, Ordering::SeqCst);
                        async move {
                            gate.notified().await;
                            Some("v2".to_owned())
                        }
                    })
                    .await
            })
        })
        .collect();
    // The refresh is held at the gate: every reader must still have answered.
    for r in readers {
        let v = tokio::time::timeout(Duration::from_secs(10), r)
            .await
            .expect("a reader waited for the refresh")
            .expect("task");
        assert_eq!(v.expect("value").as_deref(), Some("v1"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one refresh");
    assert_eq!(cache.stats().refreshes, 1);
    assert_eq!(cache.stats().loads, 1, "only the first load has finished");

    gate.notify_one();
    eventually("refreshed value in L1", || {
        l1_value(&cache, 1).as_deref() == Some("v2")
    })
    .await;
    eventually("refresh finished", || cache.stats().loads == 2).await;
    // The new entry has a full TTL again: no refresh at 85 s of the old one.
    let v = cache
        .get_or_load(1, |_| async { Some("v3".to_owned()) })
        .await;
    assert_eq!(v.expect("hit").as_deref(), Some("v2"));
    assert_eq!(cache.stats().refreshes, 1);
    // ... and the next refresh window starts another one. The first read in
    // it may come while the last refresh's task is still clearing its
    // bookkeeping (the mock clock jumps the window in no time; CI once caught
    // it there), which skips it: reads keep coming, as in a live service, until
    // one starts the refresh. Every read meanwhile answers the old value.
    clock.advance(Duration::from_secs(85));
    eventually_async("second refresh", || {
        let cache = cache.clone();
        async move {
            let v = cache
                .get_or_load(1, |_| async { Some("v3".to_owned()) })
                .await;
            assert!(matches!(&v, Ok(Some(s)) if s == "v2" || s == "v3"), "{v:?}");
            l1_value(&cache, 1).as_deref() == Some("v3")
        }
    })
    .await;
    assert_eq!(cache.stats().refreshes, 2, "one refresh per window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_refresh_before_the_threshold() {
    let clock = MockClock::default();
    let cache = refreshing_cache(&clock, RefreshAhead::Threshold(0.2));
    let _ = cache
        .get_or_load(1, |_| async { Some("v1".to_owned()) })
        .await;
    clock.advance(Duration::from_secs(79));
    for _ in 0..100 {
        let _ = cache
            .get_or_load(1, |_| async { Some("v2".to_owned()) })
            .await;
    }
    assert_eq!(cache.stats().refreshes, 0);
    clock.advance(Duration::from_secs(2));
    let _ = cache
        .get_or_load(1, |_| async { Some("v2".to_owned()) })
        .await;
    assert_eq!(cache.stats().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfetch_refreshes_near_expiry_and_not_long_before() {
    let clock = MockClock::default();
    let x = XFetch::new(1.0).expect("beta");
    let cache = refreshing_cache(&clock, RefreshAhead::XFetch(x));
    // δ, the load time, is measured: about 50 ms here.
    let _ = cache
        .get_or_load(1, |_| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some("v1".to_owned())
        })
        .await;
    // 10 s left with δ ≈ 50 ms: the chance per read is exp(-200) — never.
    clock.advance(Duration::from_secs(90));
    for _ in 0..500 {
        let _ = cache
            .get_or_load(1, |_| async { Some("v2".to_owned()) })
            .await;
    }
    assert_eq!(cache.stats().refreshes, 0);
    // 1 ms left: almost every read wants to refresh; exactly one runs.
    clock.advance(Duration::from_millis(9_999));
    for _ in 0..500 {
        let v = cache
            .get_or_load(1, |_| async { Some("v2".to_owned()) })
            .await;
        assert!(v.expect("hit").is_some());
    }
    eventually("xfetch refresh", || {
        l1_value(&cache, 1).as_deref() == Some("v2")
    })
    .await;
    assert_eq!(cache.stats().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_refresh_keeps_the_old_value_until_its_stale_window_ends() {
    let clock = MockClock::default();
    let cache = refreshing_cache(&clock, RefreshAhead::Threshold(0.2));
    let _ = cache
        .get_or_load(1, |_| async { Some("v1".to_owned()) })
        .await;
    clock.advance(Duration::from_secs(90));
    let failing = |_| async { Err::<Option<String>, _>(SourceDown) };
    let v = cache.try_get_or_load(1, failing).await;
    assert_eq!(v.expect("old value").as_deref(), Some("v1"));
    eventually("refresh failure counted", || {
        cache.stats().refresh_errors == 1
    })
    .await;
    assert_eq!(l1_value(&cache, 1).as_deref(), Some("v1"));
    // Past the TTL, within the stale window: the failing loader is covered.
    clock.advance(Duration::from_secs(20));
    let v = cache.try_get_or_load(1, failing).await;
    assert_eq!(v.expect("stale").as_deref(), Some("v1"));
    assert_eq!(cache.stats().stale_served, 1);
    // Past the stale window: the error.
    clock.advance(Duration::from_secs(200));
    let err = cache
        .try_get_or_load(1, failing)
        .await
        .expect_err("no stale left");
    assert!(err.loader_error::<SourceDown>().is_some());
}

struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_does_not_outlive_the_cache() {
    let clock = MockClock::default();
    let cache = refreshing_cache(&clock, RefreshAhead::Threshold(0.2));
    let _ = cache
        .get_or_load(1, |_| async { Some("v1".to_owned()) })
        .await;
    clock.advance(Duration::from_secs(90));
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (d, s) = (dropped.clone(), started.clone());
    let _ = cache
        .get_or_load(1, move |_| async move {
            let _flag = DropFlag(d);
            s.store(true, Ordering::SeqCst);
            std::future::pending::<Option<String>>().await
        })
        .await;
    eventually("refresh running", || started.load(Ordering::SeqCst)).await;
    assert!(!dropped.load(Ordering::SeqCst));
    drop(cache);
    eventually("refresh aborted with the cache", || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
}

#[test]
fn refresh_threshold_is_validated_at_build() {
    for bad in [0.0, 1.0, -0.5, f64::NAN] {
        let err = Cache::builder("x")
            .refresh_ahead(RefreshAhead::Threshold(bad))
            .build::<u64, String>()
            .expect_err("invalid threshold");
        assert!(err.to_string().contains("refresh_ahead"), "{err}");
    }
}

/// Records each batch loader call.
#[derive(Clone, Default)]
struct BatchSource {
    calls: Arc<Mutex<Vec<Vec<u64>>>>,
}

impl BatchSource {
    /// Returns values for ids below `exists_below`.
    fn loader(
        &self,
        exists_below: u64,
    ) -> impl FnOnce(Vec<u64>) -> std::future::Ready<Result<HashMap<u64, String>, SourceDown>> + use<>
    {
        let calls = self.calls.clone();
        move |keys: Vec<u64>| {
            lock(&calls).push(keys.clone());
            std::future::ready(Ok(keys
                .into_iter()
                .filter(|k| *k < exists_below)
                .map(|k| (k, format!("v{k}")))
                .collect()))
        }
    }
    fn calls(&self) -> Vec<Vec<u64>> {
        lock(&self.calls).clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_100_with_30_missing_calls_the_loader_once_with_those_30() {
    let server = RedisServer::start().expect("redis");
    let cache: Cache<u64, String> = Cache::builder("batch")
        .redis_url(server.url())
        .build()
        .expect("config");
    // 0..40 in L1 and L2, 40..70 in L2 only, 70..100 nowhere.
    cache
        .set_many((0..70).map(|k| (k, format!("v{k}"))).collect())
        .await
        .expect("seed");
    cache.tiered().l1().clear();
    for k in 0..40u64 {
        assert!(cache.get(&k).await.expect("backfill").is_some());
    }
    let before = cache.stats();
    let source = BatchSource::default();
    let keys: Vec<u64> = (0..100).collect();
    let got = cache
        .get_many_or_load(&keys, source.loader(95))
        .await
        .expect("batch");
    assert_eq!(source.calls(), vec![(70..100).collect::<Vec<u64>>()]);
    for (k, v) in keys.iter().zip(&got) {
        let expected = (*k < 95).then(|| format!("v{k}"));
        assert_eq!(v, &expected, "key {k}");
    }
    let after = cache.stats();
    assert_eq!(after.l1_hits - before.l1_hits, 40);
    assert_eq!(after.l2_hits - before.l2_hits, 30);
    assert_eq!(after.loads - before.loads, 1);

    // Everything is cached now, the 5 unknown ids as absent: no second call.
    let again = cache
        .get_many_or_load(&keys, source.loader(95))
        .await
        .expect("batch");
    assert_eq!(again, got);
    assert_eq!(source.calls().len(), 1);
    // Loaded values reached Redis too: a fresh instance finds them in L2.
    let other: Cache<u64, String> = Cache::builder("batch")
        .redis_url(server.url())
        .build()
        .expect("config");
    let from_l2 = other.get_many(&[70, 94]).await.expect("l2");
    assert_eq!(from_l2, vec![Some("v70".into()), Some("v94".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_joins_a_load_already_in_flight() {
    let server = RedisServer::start().expect("redis");
    let cache: Cache<u64, String> = Cache::builder("batch-join")
        .redis_url(server.url())
        .build()
        .expect("config");
    let gate = Arc::new(tokio::sync::Notify::new());
    let single_runs = Arc::new(AtomicUsize::new(0));
    let single = {
        let (cache, gate, runs) = (cache.clone(), gate.clone(), single_runs.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(5, move |_| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Some("single".to_owned())
                })
                .await
        })
    };
    eventually("single load started", || {
        single_runs.load(Ordering::SeqCst) == 1
    })
    .await;
    let source = BatchSource::default();
    let batch = {
        let (cache, loader) = (cache.clone(), source.loader(100));
        tokio::spawn(async move { cache.get_many_or_load(&[4, 5, 6], loader).await })
    };
    eventually("batch loader called", || source.calls().len() == 1).await;
    assert_eq!(
        source.calls(),
        vec![vec![4, 6]],
        "key 5 is joined, not reloaded"
    );
    gate.notify_one();
    let got = batch.await.expect("task").expect("batch");
    assert_eq!(
        got,
        vec![Some("v4".into()), Some("single".into()), Some("v6".into())]
    );
    assert_eq!(
        single.await.expect("task").expect("single").as_deref(),
        Some("single")
    );
    assert_eq!(single_runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().coalesced, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_fail_open_when_redis_is_down() {
    let mut server = RedisServer::start().expect("redis");
    let cache: Cache<u64, String> = Cache::builder("batch-down")
        .redis_url(server.url())
        .build()
        .expect("config");
    server.kill();
    let source = BatchSource::default();
    let got = cache
        .get_many_or_load(&[1, 2, 3], source.loader(3))
        .await
        .expect("fail-open: no error");
    assert_eq!(got, vec![Some("v1".into()), Some("v2".into()), None]);
    assert_eq!(cache.stats().errors, 0);
    assert!(cache.tiered().stats().fail_open >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_serves_stale_values_or_fails() {
    let clock = MockClock::default();
    let cache: Cache<u64, String> = Cache::builder("batch-stale")
        .jitter(Jitter::None)
        .default_ttl(Duration::from_secs(10))
        .stale_window(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .expect("config");
    cache.set(1, "old".into()).await.expect("set");
    clock.advance(Duration::from_secs(20));
    let failing = |_keys: Vec<u64>| async { Err::<HashMap<u64, String>, _>(SourceDown) };
    let got = cache.get_many_or_load(&[1], failing).await.expect("stale");
    assert_eq!(got, vec![Some("old".into())]);
    let err = cache
        .get_many_or_load(&[1, 2], failing)
        .await
        .expect_err("key 2 has nothing to fall back on");
    assert!(err.loader_error::<SourceDown>().is_some(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_is_bounded_reports_progress_and_failures() {
    let cache: Cache<u64, String> = Cache::builder("warm").build().expect("config");
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let progress: Arc<Mutex<Vec<WarmProgress>>> = Arc::default();
    let loader = {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        move |id: u64| {
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                match id % 10 {
                    0 => Err(SourceDown),
                    5 => Ok(None),
                    _ => Ok(Some(format!("v{id}"))),
                }
            }
        }
    };
    let seen = progress.clone();
    let options = WarmOptions::new()
        .concurrency(NonZeroUsize::new(4).expect("4"))
        .on_progress(move |p| lock(&seen).push(p));
    let report = cache
        .warm(1..=100u64, options.clone(), loader.clone())
        .await;
    assert_eq!(
        (
            report.total,
            report.warmed,
            report.absent,
            report.failed.len()
        ),
        (100, 80, 10, 10)
    );
    assert!(
        report
            .failed
            .iter()
            .all(|(k, e)| k % 10 == 0 && e.loader_error::<SourceDown>().is_some())
    );
    let p = peak.load(Ordering::SeqCst);
    assert!((2..=4).contains(&p), "peak concurrency {p}");
    let updates = lock(&progress).clone();
    assert_eq!(updates.len(), 100);
    assert_eq!(
        updates.last().map(|u| (u.done, u.total, u.failed)),
        Some((100, 100, 10))
    );
    assert_eq!(cache.get(&42).await.expect("warm").as_deref(), Some("v42"));

    // Again: the 80 values are already cached; only the failures reload.
    let loads_before = cache.stats().loads;
    let report = cache.warm(1..=100u64, options, loader.clone()).await;
    assert_eq!(
        (report.already_cached, report.absent, report.failed.len()),
        (80, 10, 10)
    );
    assert_eq!(cache.stats().loads - loads_before, 10);

    let listed = cache
        .warm_from(
            || async { Err::<Vec<u64>, _>(SourceDown) },
            WarmOptions::new(),
            loader,
        )
        .await;
    assert!(matches!(listed, Err(Error::Load(_))));
}

fn rules() -> InvalidationRules {
    InvalidationRules::builder()
        .on("order.changed", |r| {
            r.tag("customer_views", "customer:{customer_id}")
                .prefix("orders", "{customer_id}:")
        })
        .on("customer.renamed", |r| {
            r.tag("customer_views", "customer:{id}")
        })
        .build()
        .expect("rules")
}

#[test]
fn rules_resolve_events_without_any_cache() {
    let rules = rules();
    let plan = rules
        .plan(
            &ChangeEvent::new("order.changed")
                .field("customer_id", 42)
                .field("order_id", 7),
        )
        .expect("plan");
    let got: Vec<(&str, TargetKind, &str)> = plan
        .iter()
        .map(|i| (i.cache.as_str(), i.kind, i.value.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("customer_views", TargetKind::Tag, "customer:42"),
            ("orders", TargetKind::Prefix, "42:"),
        ]
    );
    assert_eq!(
        rules.plan(&ChangeEvent::new("order.changed").field("order_id", 7)),
        Err(RuleError::UnresolvedField {
            event: "order.changed".into(),
            field: "customer_id".into()
        })
    );
    assert_eq!(
        rules.plan(&ChangeEvent::new("order.shipped")),
        Err(RuleError::UnknownEvent("order.shipped".into()))
    );
    // Escaped braces are literal.
    let lit = InvalidationRules::builder()
        .on("e", |r| r.tag("c", "{{x}}:{id}"))
        .build()
        .expect("rules");
    assert_eq!(
        lit.plan(&ChangeEvent::new("e").field("id", 1))
            .expect("plan")[0]
            .value,
        "{x}:1"
    );
    for bad in ["customer:{", "{}", "a}b", "{na me}", ""] {
        let err = InvalidationRules::builder()
            .on("e", |r| r.tag("c", bad))
            .build()
            .expect_err(bad);
        assert!(matches!(err, RuleError::BadTemplate { .. }), "{bad}: {err}");
    }
    assert_eq!(
        InvalidationRules::builder().on("", |r| r).build().err(),
        Some(RuleError::EmptyEvent)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_change_invalidates_the_customers_views_on_every_instance() {
    let server = RedisServer::start().expect("redis");
    let views = |url: String| -> Cache<(u64, String), String> {
        Cache::builder("customer_views")
            .redis_url(url)
            .build()
            .expect("config")
    };
    let orders = |url: String| -> Cache<(u64, u64), String> {
        Cache::builder("orders")
            .redis_url(url)
            .build()
            .expect("config")
    };
    let (views_a, orders_a) = (views(server.url()), orders(server.url()));
    let (views_b, orders_b) = (views(server.url()), orders(server.url()));
    let tagged = |c: u64| WriteOptions::new().tags([format!("customer:{c}")]);
    for c in [42u64, 43] {
        views_a
            .set_with((c, "summary".into()), format!("summary {c}"), tagged(c))
            .await
            .expect("set");
        for o in 1..=3u64 {
            orders_a
                .set((c, o), format!("order {c}/{o}"))
                .await
                .expect("set");
        }
    }
    // Instance B has its own L1 copies.
    assert!(
        views_b
            .get(&(42, "summary".into()))
            .await
            .expect("get")
            .is_some()
    );
    assert!(orders_b.get(&(42, 1)).await.expect("get").is_some());

    let caches: Vec<Arc<dyn InvalidationTarget>> =
        vec![Arc::new(views_a.clone()), Arc::new(orders_a.clone())];
    let invalidator = Invalidator::new(rules(), caches).expect("every cache known");
    let report = invalidator
        .fire(
            &ChangeEvent::new("order.changed")
                .field("customer_id", 42)
                .field("order_id", 1),
        )
        .await
        .expect("fire");
    assert_eq!(report.applied.len(), 2);
    assert!(report.removed >= 4, "{report:?}");

    for (name, gone) in [
        (
            "A views",
            views_a
                .get(&(42, "summary".into()))
                .await
                .expect("get")
                .is_none(),
        ),
        (
            "A orders",
            orders_a.get(&(42, 2)).await.expect("get").is_none(),
        ),
    ] {
        assert!(gone, "{name} still cached");
    }
    eventually("B's L1 copies dropped over the bus", || {
        views_b
            .tiered()
            .l1()
            .peek_sync(&(42, "summary".into()))
            .is_none()
            && orders_b.tiered().l1().peek_sync(&(42, 1)).is_none()
    })
    .await;
    assert!(
        views_b
            .get(&(42, "summary".into()))
            .await
            .expect("get")
            .is_none()
    );
    // Customer 43 is untouched.
    assert!(
        views_a
            .get(&(43, "summary".into()))
            .await
            .expect("get")
            .is_some()
    );
    assert!(orders_b.get(&(43, 3)).await.expect("get").is_some());

    // An unresolvable event applies nothing.
    let err = invalidator
        .fire(&ChangeEvent::new("order.changed").field("order_id", 1))
        .await
        .expect_err("missing field");
    assert!(matches!(
        &err,
        Error::Rule(e) if matches!(**e, RuleError::UnresolvedField { .. })
    ));
    assert!(orders_a.get(&(43, 1)).await.expect("get").is_some());

    // A rule naming a cache nobody registered fails when binding.
    let lonely: Vec<Arc<dyn InvalidationTarget>> = vec![Arc::new(views_a.clone())];
    assert_eq!(
        Invalidator::new(rules(), lonely).err(),
        Some(RuleError::UnknownCache("orders".into()))
    );
}
