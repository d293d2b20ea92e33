//! Figures that need a runtime: L2 through the facade vs the raw client, the
//! stampede, the outage, and the primitives' overheads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_testkit::RedisServer;
use futures_util::FutureExt;
use redis::AsyncCommands;
use resilient_cache::Cache;

use crate::report::{Report, median};
use crate::{Plan, Progress};

pub(crate) const L2_KEYS: u64 = 10_000;

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Starts a redis-server, or says why not.
pub(crate) fn start_redis(report: &mut Report) -> Option<RedisServer> {
    match RedisServer::start() {
        Ok(s) => Some(s),
        Err(e) => {
            let note = format!(
                "redis-server could not be started ({e}); the L2 and outage groups were skipped \
                 (install redis-server, or run `cargo xtask bench` as root to have it installed)"
            );
            eprintln!("{note}");
            report.notes.push(note);
            None
        }
    }
}

/// A facade cache whose L1 holds one entry, so reads go to Redis.
pub(crate) fn l2_cache(url: &str) -> Option<Cache<u64, String>> {
    Cache::builder("bench")
        .redis_url(url)
        .max_entries(1)
        .invalidation_bus(false)
        .build()
        .ok()
}

pub(crate) fn l2_units(plan: &Plan) -> u64 {
    (3 * 2 * plan.scale(3, 1) + 2 + 3) as u64
}

pub(crate) async fn l2(
    plan: &Plan,
    server: &RedisServer,
    report: &mut Report,
    progress: &Progress,
) {
    let Some(cache) = l2_cache(&server.url()) else {
        report
            .notes
            .push("l2: the facade cache did not build".into());
        return;
    };
    let value = "v".repeat(64);
    for k in 0..L2_KEYS {
        let _ = cache.set(k, value.clone()).await;
    }
    let Some(store) = cache.tiered().l2().cloned() else {
        return;
    };
    let raw_keys: Arc<Vec<String>> = Arc::new(
        (0..L2_KEYS)
            .filter_map(|k| store.redis_key(&k).ok())
            .collect(),
    );
    let Ok(client) = redis::Client::open(server.url()) else {
        return;
    };
    let Ok(conn) = client.get_multiplexed_async_connection().await else {
        report
            .notes
            .push("l2: the raw redis connection failed".into());
        return;
    };
    let dur = Duration::from_millis(plan.scale(1000, 200) as u64);
    for concurrency in [1usize, 16, 64] {
        let series = format!("GET on an L2 hit, concurrency {concurrency}");
        let (mut ours, mut raw, mut read_through) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.scale(3, 1) {
            // The read-through path: past L1 it runs as a spawned task that owns
            // the key's flight (cancel-safe), so this measures that task's cost.
            read_through.push(
                drive(concurrency, dur, {
                    let cache = cache.clone();
                    move |i| {
                        let cache = cache.clone();
                        async move {
                            let got = cache
                                .get_or_load(i % L2_KEYS, |_| async { None::<String> })
                                .await;
                            matches!(got, Ok(Some(_)))
                        }
                    }
                })
                .await,
            );
            progress.tick(&format!("l2 {series}"));
            ours.push(
                drive(concurrency, dur, {
                    let cache = cache.clone();
                    move |i| {
                        let cache = cache.clone();
                        async move { matches!(cache.get(&(i % L2_KEYS)).await, Ok(Some(_))) }
                    }
                })
                .await,
            );
            progress.tick(&format!("l2 {series}"));
            raw.push(
                drive(concurrency, dur, {
                    let conn = conn.clone();
                    let keys = raw_keys.clone();
                    move |i| {
                        let mut conn = conn.clone();
                        let keys = keys.clone();
                        async move {
                            let got: redis::RedisResult<Option<Vec<u8>>> =
                                conn.get(&keys[(i % L2_KEYS) as usize]).await;
                            matches!(got, Ok(Some(_)))
                        }
                    }
                })
                .await,
            );
            progress.tick(&format!("l2 {series}"));
        }
        report.figure("l2", series.clone(), "facade get", median(ours), "ops/s");
        report.figure(
            "l2",
            series.clone(),
            "facade get_or_load",
            median(read_through),
            "ops/s",
        );
        report.figure(
            "l2",
            series.clone(),
            "raw redis-rs GET",
            median(raw),
            "ops/s",
        );
        report.compare("l2", &series, "raw redis-rs GET");
    }
    if let (Some(o), Some(r)) = (
        report.value("l2", "GET on an L2 hit, concurrency 64", "facade get"),
        report.value("l2", "GET on an L2 hit, concurrency 64", "raw redis-rs GET"),
    ) {
        report.target(
            "L2 hit through the facade, concurrency 64",
            "≥ 0.9× raw GET",
            format!("{:.2}×", o / r),
            o >= 0.9 * r,
        );
    }

    // Batches.
    let series = "100 keys per call".to_owned();
    let ids: Vec<u64> = (0..100).collect();
    let rounds = plan.scale(200, 30);
    let mut facade_many = Vec::new();
    let mut raw_mget = Vec::new();
    let mut sequential = Vec::new();
    let mut c = conn.clone();
    let batch_keys: Vec<String> = raw_keys[..100].to_vec();
    for _ in 0..rounds {
        let t = Instant::now();
        let _ = cache.get_many(&ids).await;
        facade_many.push(t.elapsed());
        let t = Instant::now();
        let _: redis::RedisResult<Vec<Option<Vec<u8>>>> = c.mget(&batch_keys).await;
        raw_mget.push(t.elapsed());
        let t = Instant::now();
        for id in &ids {
            let _ = cache.get(id).await;
        }
        sequential.push(t.elapsed());
    }
    progress.tick("l2 batches");
    let med = |mut v: Vec<Duration>| {
        v.sort();
        ms(percentile(&v, 0.5))
    };
    let (fm, rm, sq) = (med(facade_many), med(raw_mget), med(sequential));
    report.figure("l2", series.clone(), "raw MGET 100", rm, "ms");
    report.figure("l2", series.clone(), "facade get_many(100)", fm, "ms");
    report.figure("l2", series.clone(), "100 sequential facade gets", sq, "ms");
    report.compare("l2", &series, "raw MGET 100");
    report.target(
        "get_many(100)",
        "≤ 1.2× raw MGET of 100",
        format!("{:.2}× ({:.0}× faster than 100 gets)", fm / rm, sq / fm),
        fm <= 1.2 * rm,
    );

    // The server's own ceiling.
    let mut bench = std::process::Command::new("redis-benchmark");
    bench.args([
        "-h",
        "127.0.0.1",
        "-p",
        &server.port().to_string(),
        "-t",
        "get,set",
        "-c",
        "64",
        "-q",
        "-n",
    ]);
    bench.arg(plan.scale(200_000, 20_000).to_string());
    match bench.output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.split(['\n', '\r']) {
                let Some((op, rest)) = line.split_once(": ") else {
                    continue;
                };
                let Some(rps) = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                else {
                    continue;
                };
                report.figure(
                    "l2",
                    "redis-benchmark, 64 clients",
                    format!("redis-benchmark {op}"),
                    rps,
                    "ops/s",
                );
            }
        }
        _ => report.notes.push(
            "redis-benchmark is not installed or failed; the server ceiling was skipped".into(),
        ),
    }
    progress.tick("redis-benchmark");
}

/// `concurrency` tasks calling `op(i)` in a loop for `dur`; successful ops per second.
pub(crate) async fn drive<F, Fut>(concurrency: usize, dur: Duration, op: F) -> f64
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let op = op.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut i = t as u64 * 7919;
                while start.elapsed() < dur {
                    if op(i).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

pub(crate) fn overhead_units() -> u64 {
    2
}

pub(crate) fn overheads(plan: &Plan, report: &mut Report, progress: &Progress) {
    let n = plan.scale(5_000_000, 500_000) as u64;
    let group: cache_singleflight::Group<u64, u64, ()> = cache_singleflight::Group::new();
    let start = Instant::now();
    let mut sink = 0u64;
    for i in 0..n {
        if let Some(out) = group.work(i & 1023, || async move { Ok(i) }).now_or_never() {
            sink = sink.wrapping_add(out.into_result().unwrap_or(0));
        }
    }
    std::hint::black_box(sink);
    let sf = start.elapsed().as_nanos() as f64 / n as f64;
    progress.tick("overheads");
    let Ok(breaker) = cache_breaker::CircuitBreaker::builder().build() else {
        return;
    };
    let start = Instant::now();
    for _ in 0..n {
        if let Ok(permit) = breaker.try_acquire() {
            permit.success();
        }
    }
    let br = start.elapsed().as_nanos() as f64 / n as f64;
    progress.tick("overheads");
    report.figure(
        "overheads",
        "per call, uncontended",
        "singleflight work",
        sf,
        "ns/op",
    );
    report.figure(
        "overheads",
        "per call, uncontended",
        "breaker closed path",
        br,
        "ns/op",
    );
    report.target(
        "singleflight uncontended",
        "≤ 200 ns/call",
        format!("{sf:.0} ns"),
        sf <= 200.0,
    );
    report.target(
        "breaker closed path",
        "≤ 20 ns/call",
        format!("{br:.1} ns"),
        br <= 20.0,
    );
}
