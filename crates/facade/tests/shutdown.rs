//! Graceful shutdown against a real Redis behind the fault proxy: a write still
//! on its way to a slow Redis is drained; one a dead network holds is reported.

use std::time::Duration;

use cache_testkit::{FaultProxy, RedisServer, Reply};
use resilient_cache::Cache;

fn in_l2(server: &RedisServer, cache: &Cache<u64, String>, key: u64) -> bool {
    let redis_key = cache
        .tiered()
        .l2()
        .expect("l2")
        .redis_key(&key)
        .expect("key");
    let mut raw = server.connect().expect("raw");
    raw.cmd(&["EXISTS", &redis_key]).expect("exists") == Reply::Int(1)
}

/// A cache named `name` whose L2 is behind `proxy`, bus off, already connected.
async fn connected(proxy: &FaultProxy, name: &str, op_timeout: Duration) -> Cache<u64, String> {
    let cache: Cache<u64, String> = Cache::builder(name)
        .redis_url(proxy.url())
        .op_timeout(op_timeout)
        .invalidation_bus(false)
        .build()
        .expect("valid config");
    assert_eq!(cache.get(&0).await.expect("connects"), None);
    cache
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_a_write_to_a_slow_redis_and_reports_a_stuck_one() {
    let server = RedisServer::start().expect("redis-server");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let cache = connected(&proxy, "shutdown", Duration::from_secs(5)).await;

    // Every reply takes 400 ms: the load answers from L1, its L2 write is on its way.
    proxy.set_latency(Duration::from_millis(400));
    let got = cache
        .get_or_load(1, |_| async { Some("one".to_owned()) })
        .await
        .expect("fail-open");
    assert_eq!(got.as_deref(), Some("one"));
    let report = cache.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_complete(), "{report:?}");
    assert!(in_l2(&server, &cache, 1), "the pending write reached Redis");

    // After shutdown a load's write is done before the caller is answered.
    let got = cache
        .get_or_load(2, |_| async { Some("two".to_owned()) })
        .await
        .expect("ok");
    assert_eq!(got.as_deref(), Some("two"));
    assert!(in_l2(&server, &cache, 2), "written inline");

    // A write a dead network holds is reported as left, not waited for forever.
    proxy.set_latency(Duration::ZERO);
    let stuck = connected(&proxy, "stuck", Duration::from_secs(1)).await;
    proxy.set_latency(Duration::from_millis(400));
    stuck
        .get_or_load(3, |_| async { Some("three".to_owned()) })
        .await
        .expect("fail-open");
    proxy.black_hole();
    let report = stuck.shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.writes_left, 1, "{report:?}");
    assert!(!report.is_complete());
}

/// The service's shutdown through the endpoint: the server stops taking
/// requests, then every registered cache drains its pending L2 writes.
#[cfg(feature = "http")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_server_stops_then_drains_its_caches() {
    let server = RedisServer::start().expect("redis-server");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let cache = connected(&proxy, "drained", Duration::from_secs(5)).await;
    let endpoint = resilient_cache::Endpoint::builder()
        .cache(cache.clone())
        .build()
        .expect("endpoint");
    let http = endpoint.serve("127.0.0.1:0").await.expect("bind");
    let addr = http.local_addr();
    let page = cache_testkit::http_get(addr, "/health/cache")
        .await
        .expect("serving");
    assert_eq!(page.status, 200);

    proxy.set_latency(Duration::from_millis(400));
    cache
        .get_or_load(1, |_| async { Some("one".to_owned()) })
        .await
        .expect("fail-open");
    let drained = http
        .shutdown_and_drain(Duration::from_secs(10))
        .await
        .expect("clean stop");
    assert_eq!(drained.len(), 1, "{drained:?}");
    assert_eq!(drained[0].name, "drained");
    assert!(drained[0].complete, "{drained:?}");
    assert_eq!(drained[0].report["writes_left"], 0);
    assert!(in_l2(&server, &cache, 1), "the pending write reached Redis");
    assert!(
        cache_testkit::http_get(addr, "/health/cache")
            .await
            .is_err(),
        "the server no longer answers"
    );
}
