//! A real scrape: a cache over a real redis-server behind the `/metrics` and
//! `/health/cache` endpoint, driven through hits, misses, loads and an L2 outage;
//! the scraped counters and gauges move as they should, the exposition passes
//! `promtool check metrics`, and health flips to degraded and back.

use std::time::Duration;

use cache_breaker::MockClock as BreakerClock;
use cache_testkit::{RawConnection, RedisServer, Reply, eventually, http_get};
use resilient_cache::{BreakerBuilder, Cache, Endpoint, PrometheusExporter};
use serde_json::Value;

mod common;
use common::drive_until_breaker_closes;

/// Sums every sample of `name` whose labels include all of `labels`.
/// The sum of every series of `name` carrying `labels`; panics when there is
/// none, so a metric that was never exported cannot pass as 0.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap_or(f64::NAN))
        .collect();
    assert!(!values.is_empty(), "no series {name}{labels:?} in:\n{text}");
    values.iter().sum()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let r = http_get(addr, "/metrics").await.expect("scrape");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn health(addr: std::net::SocketAddr) -> (u16, Value) {
    let r = http_get(addr, "/health/cache").await.expect("health");
    let body: Value = serde_json::from_str(&r.body).expect("JSON");
    (r.status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_follows_hits_misses_loads_and_an_l2_outage() {
    // The recorder goes in before the cache is built.
    let exporter = PrometheusExporter::install().expect("recorder");
    let mut server = RedisServer::start().expect("redis");
    let breaker_clock = BreakerClock::new();
    let cache: Cache<u64, String> = Cache::builder("scrape")
        .redis_url(server.url())
        .max_entries(16)
        .breaker(
            BreakerBuilder::default()
                .consecutive_failures(2)
                .wait_in_open(Duration::from_secs(5))
                .permitted_in_half_open(1)
                .clock(breaker_clock.clone()),
        )
        .build()
        .expect("config");
    let endpoint = Endpoint::builder()
        .metrics(exporter)
        .cache(cache.clone())
        .build()
        .expect("endpoint");
    let http = endpoint.serve("127.0.0.1:0").await.expect("bind");
    let addr = http.local_addr();
    let c = [("cache", "scrape")];

    // Phase 1, Redis up: 10 loads, 10 L1 hits, 10 L2 hits, 1 plain miss.
    for k in 1..=10u64 {
        let v = cache
            .get_or_load(k, |k| async move { Some(format!("v{k}")) })
            .await;
        assert_eq!(v.expect("load").as_deref(), Some(format!("v{k}").as_str()));
    }
    for k in 1..=10u64 {
        assert!(cache.get(&k).await.expect("l1").is_some());
    }
    // The loader writes L2 in the background; wait until all ten are there.
    let l2 = cache.tiered().l2().expect("l2").clone();
    let mut conn = RawConnection::connect(server.addr()).expect("raw connection");
    eventually("loads written to L2", || {
        (1..=10u64).all(|k| {
            let key = l2.redis_key(&k).expect("valid key");
            matches!(conn.cmd(&["EXISTS", &key]), Ok(Reply::Int(1)))
        })
    })
    .await;
    drop(conn);
    cache.tiered().l1().clear();
    for k in 1..=10u64 {
        assert!(cache.get(&k).await.expect("l2").is_some());
    }
    assert!(cache.get(&999).await.expect("miss").is_none());

    let text = scrape(addr).await;
    let requests = |tier, result| {
        sample(
            &text,
            "cache_requests_total",
            &[("cache", "scrape"), ("tier", tier), ("result", result)],
        )
    };
    assert_eq!(requests("l1", "hit"), 10.0, "{text}");
    assert_eq!(requests("l2", "hit"), 10.0, "{text}");
    assert_eq!(requests("source", "miss"), 11.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "cache_loads_total",
            &[("cache", "scrape"), ("outcome", "ok")]
        ),
        10.0
    );
    assert_eq!(sample(&text, "cache_load_duration_seconds_count", &c), 10.0);
    assert!(
        sample(&text, "cache_l2_op_duration_seconds_count", &c) >= 20.0,
        "{text}"
    );
    assert_eq!(sample(&text, "cache_breaker_state", &c), 0.0);
    assert_eq!(sample(&text, "cache_l1_entries", &c), 10.0);
    assert_eq!(sample(&text, "cache_l1_max_entries", &c), 16.0);
    assert_eq!(
        sample(
            &text,
            "cache_evictions_total",
            &[("cache", "scrape"), ("reason", "capacity")]
        ),
        0.0
    );
    // No L2 error yet: the labelled counter has not even been created.
    assert!(
        !text.contains("cache_l2_errors_total{"),
        "no L2 error expected yet: {text}"
    );
    assert_eq!(sample(&text, "cache_bus_connected", &c), 1.0);
    assert_eq!(sample(&text, "cache_fills_fenced_total", &c), 0.0, "{text}");
    let (code, body) = health(addr).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("healthy")),
        "{body}"
    );

    // Phase 2, Redis killed: every caller still gets its value (fail-open), the
    // breaker opens, L2 errors and fail-opens are counted, L1 evicts.
    server.kill();
    for k in 100..130u64 {
        let v = cache
            .get_or_load(k, |k| async move { Some(format!("v{k}")) })
            .await;
        assert_eq!(
            v.expect("fail-open").as_deref(),
            Some(format!("v{k}").as_str())
        );
    }
    let text = scrape(addr).await;
    assert_eq!(sample(&text, "cache_breaker_state", &c), 2.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "cache_breaker_transitions_total",
            &[("cache", "scrape"), ("from", "closed"), ("to", "open")]
        ),
        1.0
    );
    assert!(sample(&text, "cache_l2_errors_total", &c) >= 2.0, "{text}");
    assert!(
        sample(
            &text,
            "cache_l2_errors_total",
            &[("cache", "scrape"), ("kind", "rejected")]
        ) >= 1.0,
        "{text}"
    );
    assert!(sample(&text, "cache_fail_open_total", &c) >= 2.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "cache_loads_total",
            &[("cache", "scrape"), ("outcome", "ok")]
        ),
        40.0
    );
    assert!(
        sample(
            &text,
            "cache_evictions_total",
            &[("cache", "scrape"), ("reason", "capacity")]
        ) >= 14.0,
        "{text}"
    );
    assert_eq!(sample(&text, "cache_l1_entries", &c), 16.0);
    assert_eq!(cache.stats().errors, 0);
    let (code, body) = health(addr).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("degraded")),
        "{body}"
    );
    assert_eq!(body["caches"][0]["l2"]["breaker"], "open");
    assert_eq!(body["caches"][0]["l2"]["reachable"], false);

    // The exposition (with histograms, errors and a breaker) passes promtool's lint.
    let lint = cache_testkit::promtool(&["check", "metrics"], None, &text)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!lint.contains("cache_"), "promtool findings: {lint}");

    // Phase 3, Redis back: after the breaker's wait one probe closes it; health
    // and the gauge follow.
    server.restart().expect("restart");
    let closed =
        drive_until_breaker_closes(&cache, &breaker_clock, Duration::from_secs(5), 1_000).await;
    assert!(closed, "the breaker never closed after Redis returned");
    // Healthy also needs the bus back (it reconnects on its own) and nothing
    // left in the recovery queue.
    eventually("the bus reconnects", || cache.tiered().bus_connected()).await;
    eventually("the recovery queue drains", || {
        cache.tiered().recovery_pending() == 0
    })
    .await;
    let (code, body) = health(addr).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("healthy")),
        "{body}"
    );
    let text = scrape(addr).await;
    assert_eq!(sample(&text, "cache_breaker_state", &c), 0.0, "{text}");
    assert!(
        sample(
            &text,
            "cache_breaker_transitions_total",
            &[("cache", "scrape"), ("to", "closed")]
        ) >= 1.0
    );

    // Phase 4: a key invalidated while its load runs; the loaded value is
    // not kept, and the scrape says so.
    let during = cache.clone();
    let got = cache
        .get_or_load(500, move |k| async move {
            let read = format!("v{k}");
            during.remove(&k).await.expect("remove");
            Some(read)
        })
        .await;
    assert_eq!(got.expect("load").as_deref(), Some("v500"));
    let text = scrape(addr).await;
    assert_eq!(sample(&text, "cache_fills_fenced_total", &c), 1.0, "{text}");
    http.shutdown().await.expect("shutdown");
}
