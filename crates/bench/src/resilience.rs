//! Resilience figures: a stampede of cold callers, and the cost of a Redis outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_testkit::RedisServer;
use resilient_cache::Cache;

use crate::l2::{ms, percentile};
use crate::report::Report;
use crate::{Plan, Progress};

pub(crate) fn stampede_units(plan: &Plan) -> u64 {
    (2 * plan.scale(5, 2)) as u64
}

pub(crate) async fn stampede(plan: &Plan, report: &mut Report, progress: &Progress) {
    const CALLERS: usize = 1000;
    let loader_time = Duration::from_millis(50);
    let (mut ours, mut moka_times) = (Vec::new(), Vec::new());
    let mut max_loads = 0;
    for round in 0..plan.scale(5, 2) as u64 {
        let Ok(cache) = Cache::builder("stampede").build::<u64, u64>() else {
            return;
        };
        let runs = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let cache = cache.clone();
                let runs = runs.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_load(round, move |k| async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(loader_time).await;
                            Some(k)
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        ours.push(start.elapsed());
        max_loads = max_loads.max(runs.load(Ordering::SeqCst));
        progress.tick("stampede");

        let moka: moka::future::Cache<u64, u64> = moka::future::Cache::new(1000);
        let runs = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let moka = moka.clone();
                let runs = runs.clone();
                tokio::spawn(async move {
                    moka.get_with(round, async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(loader_time).await;
                        round
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        moka_times.push(start.elapsed());
        progress.tick("stampede");
    }
    ours.sort();
    moka_times.sort();
    let (o, m) = (ms(percentile(&ours, 0.5)), ms(percentile(&moka_times, 0.5)));
    let series = "1,000 concurrent cold calls, 50 ms loader";
    report.figure("stampede", series, "facade get_or_load", o, "ms");
    report.figure("stampede", series, "moka::future get_with", m, "ms");
    report.compare("stampede", series, "moka::future get_with");
    report.figure(
        "stampede",
        "loader runs per stampede (max over rounds)",
        "facade get_or_load",
        max_loads as f64,
        "runs",
    );
    report.target(
        "stampede: loads",
        "exactly 1",
        format!("{max_loads}"),
        max_loads == 1,
    );
    report.target(
        "stampede: wall time",
        "≤ 1.05× moka get_with",
        format!("{:.2}× ({o:.1} ms vs {m:.1} ms)", o / m),
        o <= 1.05 * m,
    );
}

pub(crate) fn outage_units(_plan: &Plan) -> u64 {
    3
}

pub(crate) async fn outage(
    plan: &Plan,
    server: &mut RedisServer,
    report: &mut Report,
    progress: &Progress,
) {
    let wait_in_open = Duration::from_millis(500);
    let Ok(cache) = Cache::builder("outage")
        .redis_url(server.url())
        .op_timeout(Duration::from_millis(100))
        .breaker(
            cache_breaker::CircuitBreaker::builder()
                .consecutive_failures(5)
                .wait_in_open(wait_in_open),
        )
        .build::<u64, String>()
    else {
        report.notes.push("outage: the cache did not build".into());
        return;
    };
    let loader_time = Duration::from_millis(2);
    let calls = plan.scale(2000, 300) as u64;
    // The loader alone.
    let mut alone = Vec::new();
    for _ in 0..calls.min(300) {
        let t = Instant::now();
        tokio::time::sleep(loader_time).await;
        alone.push(t.elapsed());
    }
    alone.sort();
    progress.tick("outage");

    server.kill();
    let mut during = Vec::new();
    for k in 0..calls {
        let t = Instant::now();
        let _ = cache
            .get_or_load(1_000_000 + k, move |k| async move {
                tokio::time::sleep(loader_time).await;
                Some(format!("v{k}"))
            })
            .await;
        during.push(t.elapsed());
    }
    during.sort();
    progress.tick("outage");
    let series = "get_or_load of cold keys, Redis killed";
    let (p50, p99) = (ms(percentile(&during, 0.5)), ms(percentile(&during, 0.99)));
    let (l50, l99) = (ms(percentile(&alone, 0.5)), ms(percentile(&alone, 0.99)));
    report.figure("outage", series, "loader alone p50", l50, "ms");
    report.figure("outage", series, "loader alone p99", l99, "ms");
    report.figure("outage", series, "get_or_load p50", p50, "ms");
    report.figure("outage", series, "get_or_load p99", p99, "ms");
    report.target(
        "outage p99",
        "≤ loader p99 + 2 ms",
        format!("{p99:.2} ms vs {l99:.2} ms"),
        p99 <= l99 + 2.0,
    );

    if server.restart().is_err() {
        report
            .notes
            .push("outage: redis-server did not restart".into());
        return;
    }
    let back = Instant::now();
    let breaker = cache.tiered().breaker().cloned();
    let mut used_again = None;
    let mut k = 2_000_000u64;
    while back.elapsed() < Duration::from_secs(10) {
        let _ = cache
            .get_or_load(k, |k| async move { Some(format!("v{k}")) })
            .await;
        k += 1;
        if breaker
            .as_ref()
            .is_some_and(|b| b.state() == cache_breaker::State::Closed)
        {
            used_again = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    progress.tick("outage");
    match used_again {
        Some(t) => {
            report.figure(
                "outage",
                "recovery",
                "L2 used again after restart",
                ms(t),
                "ms",
            );
            report.figure(
                "outage",
                "recovery",
                "breaker wait in open",
                ms(wait_in_open),
                "ms",
            );
            // One probe: the op timeout bounds it.
            let bound = wait_in_open + Duration::from_millis(100);
            report.target(
                "L2 used again after Redis returns",
                "≤ breaker wait + 1 probe",
                format!("{:.0} ms vs {:.0} ms", ms(t), ms(bound)),
                t <= bound,
            );
        }
        None => report
            .notes
            .push("outage: the breaker did not close within 10 s of the restart".into()),
    }
}
