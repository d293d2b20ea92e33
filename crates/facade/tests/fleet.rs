//! One load per key across the fleet (several `Cache` instances over one real
//! Redis or cluster), flights that survive cancelled callers, and what happens
//! when the lease holder dies or Redis is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_store_redis::{LeaseAttempt, RedisStore};
use cache_testkit::{RedisCluster, RedisServer, eventually, eventually_async};
use resilient_cache::{Cache, CacheStats, FleetFlight, Jitter};
use tokio::sync::Notify;

enum Target<'a> {
    One(&'a str),
    Cluster(Vec<String>),
}

fn instance(target: &Target<'_>, fleet: FleetFlight) -> Cache<u64, String> {
    let b = Cache::builder("fleet")
        .jitter(Jitter::None)
        .default_ttl(Duration::from_secs(60))
        .op_timeout(Duration::from_millis(500))
        .fleet_flight(fleet);
    match target {
        Target::One(url) => b.redis_url(*url),
        Target::Cluster(urls) => b.redis_cluster(urls.clone()),
    }
    .build()
    .expect("valid config")
}

fn total(instances: &[Cache<u64, String>], f: impl Fn(&CacheStats) -> u64) -> u64 {
    instances.iter().map(|c| f(&c.stats())).sum()
}

/// `callers` concurrent `get_or_load`s of `key` on every instance; the loader
/// takes `load_time`. Returns how often it ran, fleet-wide.
async fn stampede(
    instances: &[Cache<u64, String>],
    callers: usize,
    key: u64,
    load_time: Duration,
) -> usize {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for cache in instances {
        for _ in 0..callers {
            let (cache, runs) = (cache.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(key, move |id| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(load_time).await;
                        Some(format!("user {id}"))
                    })
                    .await
            }));
        }
    }
    for t in tasks {
        let got = t.await.expect("no panic").expect("no error");
        assert_eq!(got.as_deref(), Some(format!("user {key}").as_str()));
    }
    runs.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_over_one_redis_load_a_cold_key_once() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let fleet: Vec<_> = (0..4)
        .map(|_| instance(&Target::One(&url), FleetFlight::DEFAULT))
        .collect();
    let runs = stampede(&fleet, 250, 7, Duration::from_millis(300)).await;
    assert_eq!(runs, 1, "one loader run for the whole fleet");
    assert_eq!(total(&fleet, |s| s.fleet_leases), 1);
    assert_eq!(
        total(&fleet, |s| s.fleet_waits),
        3,
        "the other three waited"
    );
    assert_eq!(total(&fleet, |s| s.errors), 0);
    // The lease is given back once the value is in L2.
    let store = RedisStore::builder()
        .url(url.clone())
        .prefix("cache")
        .namespace("fleet")
        .build()
        .expect("store");
    eventually_async("the lease is released", || {
        let store = store.clone();
        async move { matches!(store.lease_held(&7u64).await, Ok(false)) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fleet_flight_every_instance_loads() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let fleet: Vec<_> = (0..3)
        .map(|_| instance(&Target::One(&url), FleetFlight::Off))
        .collect();
    let runs = stampede(&fleet, 50, 7, Duration::from_millis(200)).await;
    assert_eq!(runs, 3, "the control: one load per instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_over_a_cluster_load_each_cold_key_once() {
    let cluster = RedisCluster::start().expect("cluster");
    let target = Target::Cluster(cluster.urls());
    let fleet: Vec<_> = (0..4)
        .map(|_| instance(&target, FleetFlight::DEFAULT))
        .collect();
    // Connected first: a connect slower than the op timeout (topology discovery
    // on a busy machine) would rightly make the first loads local.
    for cache in &fleet {
        assert!(cache.get(&0).await.expect("no error").is_none());
    }
    // Keys spread over the masters; each is loaded once fleet-wide.
    for key in [1u64, 2, 3, 4, 5] {
        let runs = stampede(&fleet, 50, key, Duration::from_millis(150)).await;
        let stats: Vec<_> = fleet
            .iter()
            .map(|c| {
                let s = c.stats();
                (
                    s.fleet_leases,
                    s.fleet_waits,
                    s.fleet_wait_timeouts,
                    s.fleet_local,
                )
            })
            .collect();
        assert_eq!(
            runs, 1,
            "key {key}: (leases, waits, timeouts, local) {stats:?}"
        );
    }
    assert_eq!(total(&fleet, |s| s.fleet_leases), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_holder_died_expires_and_one_waiter_loads() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    // A "dead instance": it took the lease and will never extend or release it.
    let dead = RedisStore::builder()
        .url(url.clone())
        .prefix("cache")
        .namespace("fleet")
        .build()
        .expect("store");
    let ttl = Duration::from_millis(400);
    assert!(matches!(
        dead.try_lease(&9u64, ttl).await.expect("redis answers"),
        LeaseAttempt::Acquired(_)
    ));
    let fleet: Vec<_> = (0..3)
        .map(|_| {
            instance(
                &Target::One(&url),
                FleetFlight::Lease {
                    ttl,
                    wait: Duration::from_secs(20),
                },
            )
        })
        .collect();
    let runs = stampede(&fleet, 20, 9, Duration::from_millis(100)).await;
    assert_eq!(
        runs, 1,
        "after the lease expired, exactly one instance loaded"
    );
    assert_eq!(total(&fleet, |s| s.fleet_leases), 1);
    assert_eq!(total(&fleet, |s| s.fleet_waits), 2);
    assert_eq!(total(&fleet, |s| s.fleet_wait_timeouts), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_load_keeps_its_lease_alive() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let short = FleetFlight::Lease {
        ttl: Duration::from_millis(150),
        wait: Duration::from_secs(20),
    };
    let fleet: Vec<_> = (0..2)
        .map(|_| instance(&Target::One(&url), short))
        .collect();
    // The load lasts several lease lifetimes: the holder extends it.
    let runs = stampede(&fleet, 10, 11, Duration::from_millis(700)).await;
    assert_eq!(runs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_each_instance_loads_once_and_nobody_errs() {
    let mut server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let fleet: Vec<_> = (0..3)
        .map(|_| instance(&Target::One(&url), FleetFlight::DEFAULT))
        .collect();
    server.kill();
    let runs = stampede(&fleet, 100, 5, Duration::from_millis(100)).await;
    assert_eq!(runs, 3, "local single flight: one load per instance");
    assert_eq!(total(&fleet, |s| s.errors), 0);
    assert_eq!(total(&fleet, |s| s.fleet_local), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_callers_never_start_a_second_load() {
    for redis in [false, true] {
        let server = RedisServer::start().expect("redis-server");
        let b = Cache::builder("cancel").jitter(Jitter::None);
        let cache: Cache<u64, String> = if redis { b.redis_url(server.url()) } else { b }
            .build()
            .expect("valid config");
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let call = |cache: &Cache<u64, String>| {
            let (cache, runs, gate) = (cache.clone(), runs.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(3, move |id| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Some(format!("v{id}"))
                    })
                    .await
            })
        };
        let first = call(&cache);
        eventually("the load started", || runs.load(Ordering::SeqCst) == 1).await;
        let waiting: Vec<_> = (0..100).map(|_| call(&cache)).collect();
        // The first caller and every other waiting caller give up mid-load.
        first.abort();
        let mut kept = Vec::new();
        for (i, t) in waiting.into_iter().enumerate() {
            if i % 2 == 0 {
                t.abort();
            } else {
                kept.push(t);
            }
        }
        // Callers arriving after the cancellations join the same load.
        kept.extend((0..20).map(|_| call(&cache)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.notify_one();
        for t in kept {
            assert_eq!(
                t.await.expect("no panic").expect("value").as_deref(),
                Some("v3")
            );
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "redis: {redis}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_runs_once_per_fleet() {
    let server = RedisServer::start().expect("redis-server");
    let clock = cache_core::MockClock::default();
    let fleet: Vec<Cache<u64, String>> = (0..3)
        .map(|_| {
            Cache::builder("refresh-fleet")
                .jitter(Jitter::None)
                .default_ttl(Duration::from_secs(100))
                .refresh_ahead(resilient_cache::RefreshAhead::Threshold(0.2))
                .clock(clock.clone())
                .redis_url(server.url())
                .build()
                .expect("valid config")
        })
        .collect();
    for cache in &fleet {
        let got = cache
            .get_or_load(1, |_| async { Some("v1".to_owned()) })
            .await;
        assert_eq!(got.expect("value").as_deref(), Some("v1"));
    }
    assert_eq!(total(&fleet, |s| s.loads), 1);
    // How the first reads met the first load (a wait, or the value already in
    // L2) depends on timing; the refresh's own decisions are counted from here.
    let leases = total(&fleet, |s| s.fleet_leases);
    let waits = total(&fleet, |s| s.fleet_waits);
    // Inside the last 20 % of the TTL on every instance: each wants a refresh.
    clock.advance(Duration::from_secs(85));
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    for cache in &fleet {
        let (runs, gate) = (runs.clone(), gate.clone());
        let got = cache
            .get_or_load(1, move |_| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Some("v2".to_owned())
            })
            .await;
        assert_eq!(
            got.expect("value").as_deref(),
            Some("v1"),
            "answered at once"
        );
    }
    // Every instance's refresh has decided: one holds the lease, the others saw it held.
    eventually("every refresh decided", || {
        total(&fleet, |s| s.fleet_leases) == leases + 1
            && total(&fleet, |s| s.fleet_waits) == waits + 2
    })
    .await;
    eventually("the refresh's loader started", || {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    gate.notify_one();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one refresh for the fleet");
    assert_eq!(total(&fleet, |s| s.refreshes), 3, "each instance asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_batch_caller_leaves_its_load_to_the_callers_that_joined() {
    let cache: Cache<u64, String> = Cache::builder("batch-cancel")
        .jitter(Jitter::None)
        .build()
        .expect("valid config");
    let (batch_runs, single_runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let gate = Arc::new(Notify::new());
    let batch = {
        let (cache, runs, gate) = (cache.clone(), batch_runs.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_many_or_load(&[1, 2, 3], move |keys| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok::<_, std::io::Error>(
                        keys.into_iter()
                            .map(|k| (k, format!("batch {k}")))
                            .collect(),
                    )
                })
                .await
        })
    };
    eventually("the batch load started", || {
        batch_runs.load(Ordering::SeqCst) == 1
    })
    .await;
    let joined: Vec<_> = (0..10)
        .map(|_| {
            let (cache, runs) = (cache.clone(), single_runs.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(2, move |k| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Some(format!("single {k}"))
                    })
                    .await
            })
        })
        .collect();
    // Most have joined by now; any that have not will join after the abort: the
    // flights stay registered while the batch load runs, either way.
    tokio::time::sleep(Duration::from_millis(20)).await;
    batch.abort();
    let _ = batch.await;
    gate.notify_one();
    for t in joined {
        assert_eq!(
            t.await.expect("no panic").expect("value").as_deref(),
            Some("batch 2")
        );
    }
    assert_eq!(batch_runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        single_runs.load(Ordering::SeqCst),
        0,
        "nobody loaded a second time"
    );
}
