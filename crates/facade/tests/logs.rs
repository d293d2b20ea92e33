//! Log events through `tracing`, captured by a subscriber of the test's own: what
//! an operator needs to see when Redis fails and comes back, and never a key or a
//! password.
#![cfg(feature = "tracing")]

mod common;

use std::time::Duration;

use cache_testkit::{RedisServer, eventually, free_port};
use common::capture::Capture;
use resilient_cache::{BreakerBuilder, Cache};

/// A key no log line may contain.
const SECRET_KEY: u64 = 987_654_321_123;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_and_its_end_are_logged_without_keys_or_passwords() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).expect("the only subscriber");

    // Start-up against a Redis that is not there: an error, once, without the password.
    let nowhere = format!(
        "redis://:s3cret-pw@127.0.0.1:{}",
        free_port().expect("port")
    );
    let lonely: Cache<u64, u64> = Cache::builder("logs_down")
        .redis_url(nowhere)
        .build()
        .expect("build");
    let v = lonely
        .get_or_load(SECRET_KEY, |k| async move { Some(k) })
        .await
        .expect("fail-open");
    assert_eq!(v, Some(SECRET_KEY));
    eventually("the failed first connect is an error", || {
        capture.saw("ERROR") && capture.saw("cannot connect to Redis")
    })
    .await;

    // A load is a span with the cache's name and its outcome.
    let mut server = RedisServer::start().expect("redis");
    let cache: Cache<u64, u64> = Cache::builder("logs")
        .redis_url(server.url())
        .breaker(BreakerBuilder::default().consecutive_failures(2))
        .slow_load_warning(Duration::from_millis(50))
        .build()
        .expect("build");
    eventually("the bus connects", || cache.tiered().bus_connected()).await;
    cache
        .get_or_load(SECRET_KEY + 1, |k| async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            Some(k)
        })
        .await
        .expect("load");
    assert!(
        capture.saw("SPAN cache_load: cache=logs"),
        "{:#?}",
        capture.lines()
    );
    assert!(capture.saw("outcome=\"ok\""), "{:#?}", capture.lines());
    assert!(capture.saw("slow load"), "{:#?}", capture.lines());

    // Redis dies: L2 faults, the breaker opening, the bus going away.
    server.kill();
    for k in 0..10 {
        let _ = cache.get_or_load(k, |k| async move { Some(k) }).await;
    }
    cache
        .remove(&(SECRET_KEY + 1))
        .await
        .expect("fail-open remove");
    eventually("fault, breaker and bus are logged", || {
        capture.saw("Redis (L2) operation failed")
            && capture.saw("circuit breaker of Redis (L2) changed state")
            && capture.saw("invalidation bus disconnected")
    })
    .await;

    // Redis comes back empty: the gap, the reconnect and the replayed queue.
    server.restart().expect("restart");
    eventually("the recovery is logged", || {
        capture.saw("invalidation bus gap")
            && capture.saw("invalidation bus reconnected")
            && capture.saw("recovery queue drained")
            && capture.saw("connected to Redis again")
    })
    .await;

    let lines = capture.lines();
    for line in &lines {
        assert!(!line.contains("s3cret"), "a password in the log: {line}");
        assert!(
            !line.contains(&SECRET_KEY.to_string()[..9]),
            "a key in the log: {line}"
        );
    }
}
