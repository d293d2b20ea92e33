//! Emptying a whole cache: `clear()` (the clear epoch, one round trip) against
//! `invalidate_prefix("")` (a `SCAN` of the namespace and `UNLINK`s), on the same
//! number of keys in a real Redis.

use std::time::{Duration, Instant};

use cache_testkit::RedisServer;
use resilient_cache::{Cache, FailMode};

use crate::l2::ms;
use crate::report::Report;
use crate::{Plan, Progress};

pub(crate) fn clear_units(plan: &Plan) -> u64 {
    (2 * plan.scale(3, 1) + 1) as u64
}

fn keys(plan: &Plan) -> u64 {
    plan.scale(100_000, 20_000) as u64
}

/// Writes `n` keys to L2 in batches.
async fn fill(cache: &Cache<u64, String>, n: u64) -> bool {
    for start in (0..n).step_by(1_000) {
        let batch: Vec<(u64, String)> = (start..(start + 1_000).min(n))
            .map(|k| (k, format!("value {k}")))
            .collect();
        if cache.set_many(batch).await.is_err() {
            return false;
        }
    }
    true
}

pub(crate) async fn clear(
    plan: &Plan,
    server: &RedisServer,
    report: &mut Report,
    progress: &Progress,
) {
    let n = keys(plan);
    let Ok(cache) = Cache::builder("bench-clear")
        .redis_url(server.url())
        .max_entries(1_000)
        .fail_mode(FailMode::Closed)
        .op_timeout(Duration::from_secs(10))
        .build::<u64, String>()
    else {
        report.notes.push("clear: the cache did not build".into());
        return;
    };
    let (mut epoch, mut scan) = (Vec::new(), Vec::new());
    for _ in 0..plan.scale(3, 1) {
        if !fill(&cache, n).await {
            report.notes.push("clear: filling Redis failed".into());
            return;
        }
        let start = Instant::now();
        let removed = cache.invalidate_prefix("").await;
        scan.push(start.elapsed());
        if removed.as_ref().is_ok_and(|&r| r < n) || removed.is_err() {
            report.notes.push(format!(
                "clear: the prefix scan removed {removed:?} of {n} keys"
            ));
        }
        progress.tick("clear");

        if !fill(&cache, n).await {
            report.notes.push("clear: filling Redis failed".into());
            return;
        }
        let start = Instant::now();
        let cleared = cache.clear().await;
        epoch.push(start.elapsed());
        if cleared.is_err() || cache.get(&(n / 2)).await.ok().flatten().is_some() {
            report.notes.push("clear: a key survived clear()".into());
        }
        progress.tick("clear");
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let (epoch, scan) = (best(&epoch), best(&scan));
    let series = format!("empty a cache of {n} keys in L2 (best of runs)");
    report.figure(
        "clear",
        &series,
        "invalidate_prefix(\"\") (SCAN)",
        ms(scan),
        "ms",
    );
    report.figure("clear", &series, "clear() (epoch)", ms(epoch), "ms");
    report.compare("clear", &series, "clear() (epoch)");
    tag(&cache, n.min(10_000), report).await;
    report.target(
        "clear() is O(1)",
        "≤ 5 ms, whatever the size",
        format!(
            "{:.2} ms for {n} keys (SCAN: {:.0} ms)",
            ms(epoch),
            ms(scan)
        ),
        epoch <= Duration::from_millis(5),
    );
}

/// What tag invalidation costs with member sets (the design kept): one walk of
/// the tag's members when it is invalidated, nothing on reads. A logical tag
/// barrier would instead cost every L2 read a lookup of its tags' epochs.
async fn tag(cache: &Cache<u64, String>, members: u64, report: &mut Report) {
    let options = resilient_cache::WriteOptions::new().tags(["bench-tag"]);
    for k in 0..members {
        if cache
            .set_with(k, format!("v{k}"), options.clone())
            .await
            .is_err()
        {
            report.notes.push("clear: tagging failed".into());
            return;
        }
    }
    let start = Instant::now();
    let removed = cache.invalidate_tag("bench-tag").await;
    let took = start.elapsed();
    if removed.as_ref().ok() != Some(&members) {
        report.notes.push(format!(
            "clear: invalidate_tag removed {removed:?} of {members}"
        ));
    }
    report.figure(
        "clear",
        format!("invalidate_tag of {members} members (member set)"),
        "invalidate_tag",
        ms(took),
        "ms",
    );
}
