//! `cache-bench --ab-l2 [SECONDS]`: the facade's `get` on an L2 hit against
//! the raw client's `GET`, both at concurrency 64 over one local
//! `redis-server`, in interleaved 250 ms rounds; prints the medians and their
//! ratio (the figure the `l2` group checks against 0.9×). `L2_ONLY=facade` or
//! `L2_ONLY=raw` runs one side only, for `perf record` / `perf stat`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cache_testkit::RedisServer;
use redis::AsyncCommands;

use crate::l2::{L2_KEYS, drive, l2_cache};
use crate::report::median;

const CONCURRENCY: usize = 64;

pub(crate) fn ab_l2(args: &[String]) -> ExitCode {
    let secs: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(4);
    let only = std::env::var("L2_ONLY").unwrap_or_default();
    let Some(runtime) = crate::runtime() else {
        return ExitCode::FAILURE;
    };
    let server = match RedisServer::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("redis-server could not be started: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let Some(cache) = l2_cache(&server.url()) else {
            eprintln!("the facade cache did not build");
            return ExitCode::FAILURE;
        };
        let value = "v".repeat(64);
        for k in 0..L2_KEYS {
            let _ = cache.set(k, value.clone()).await;
        }
        let Some(store) = cache.tiered().l2().cloned() else {
            return ExitCode::FAILURE;
        };
        let keys: Arc<Vec<String>> =
            Arc::new((0..L2_KEYS).filter_map(|k| store.redis_key(&k).ok()).collect());
        let conn = match redis::Client::open(server.url()) {
            Ok(c) => match c.get_multiplexed_async_connection().await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("raw connection: {e}");
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => {
                eprintln!("raw client: {e}");
                return ExitCode::FAILURE;
            }
        };
        let round = Duration::from_millis(250);
        let facade = || {
            let cache = cache.clone();
            drive(CONCURRENCY, round, move |i| {
                let cache = cache.clone();
                async move { matches!(cache.get(&(i % L2_KEYS)).await, Ok(Some(_))) }
            })
        };
        let raw = || {
            let (conn, keys) = (conn.clone(), keys.clone());
            drive(CONCURRENCY, round, move |i| {
                let (mut conn, keys) = (conn.clone(), keys.clone());
                async move {
                    let got: redis::RedisResult<Option<Vec<u8>>> =
                        conn.get(&keys[(i % L2_KEYS) as usize]).await;
                    matches!(got, Ok(Some(_)))
                }
            })
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for r in 0..secs * 2 {
            match only.as_str() {
                "facade" => a.push(facade().await),
                "raw" => b.push(raw().await),
                _ if r % 2 == 0 => {
                    a.push(facade().await);
                    b.push(raw().await);
                }
                _ => {
                    b.push(raw().await);
                    a.push(facade().await);
                }
            }
        }
        let (a, b) = (median(a), median(b));
        println!(
            "L2 hit, concurrency {CONCURRENCY}: facade get {:.1}k ops/s, raw GET {:.1}k ops/s (medians of interleaved rounds): {:.2}×",
            a / 1e3,
            b / 1e3,
            if b > 0.0 { a / b } else { 0.0 }
        );
        ExitCode::SUCCESS
    })
}
