//! Fleet-wide scenarios: a cold key stampeded on every instance at once (Redis
//! up, Redis down, callers cancelled mid-load), and Redis out of memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_testkit::RedisServer;
use resilient_cache::Cache;

use crate::harness::PhaseStats;
use crate::{Measured, Run, answer_checks, check};

/// Instances in the stampede scenarios.
pub(crate) const STAMPEDE_INSTANCES: usize = 4;
/// Concurrent callers per instance.
pub(crate) const STAMPEDE_CALLERS: usize = 250;
/// How long the source takes for one key.
const LOAD_TIME: Duration = Duration::from_millis(200);
/// The caches' operation timeout (the default).
const OP_TIMEOUT: Duration = Duration::from_millis(100);

fn instance(name: &str, url: &str) -> Result<Cache<u64, u64>, String> {
    Cache::builder(name)
        .default_ttl(Duration::from_secs(60))
        .op_timeout(OP_TIMEOUT)
        .redis_url(url)
        .build()
        .map_err(|e| e.to_string())
}

/// Builds the instances and opens their connections (a first `get`).
async fn instances(name: &str, url: &str) -> Result<Vec<Cache<u64, u64>>, String> {
    let caches = (0..STAMPEDE_INSTANCES)
        .map(|_| instance(name, url))
        .collect::<Result<Vec<_>, _>>()?;
    for c in &caches {
        let _ = c.get(&u64::MAX).await;
    }
    Ok(caches)
}

/// One stampede on `key`: every instance's callers at once. `cancel` aborts
/// every other caller (the first on each instance included) mid-load.
async fn stampede(caches: &[Cache<u64, u64>], key: u64, cancel: bool) -> (PhaseStats, u64) {
    let loads = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut kept = Vec::new();
    let mut doomed = Vec::new();
    for cache in caches {
        for i in 0..STAMPEDE_CALLERS {
            let (cache, loads) = (cache.clone(), loads.clone());
            let task = tokio::spawn(async move {
                let t0 = Instant::now();
                let got = cache
                    .get_or_load(key, move |k| async move {
                        loads.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(LOAD_TIME).await;
                        Some(k * 3)
                    })
                    .await;
                (got, t0.elapsed())
            });
            if cancel && i % 2 == 0 {
                doomed.push(task);
            } else {
                kept.push(task);
            }
        }
    }
    if cancel {
        tokio::time::sleep(LOAD_TIME / 2).await;
        for t in &doomed {
            t.abort();
        }
    }
    let mut phase = PhaseStats {
        name: format!("key {key}"),
        ..PhaseStats::default()
    };
    for t in kept {
        phase.calls += 1;
        match t.await {
            Ok((Ok(Some(v)), took)) => {
                phase.wrong += u64::from(v != key * 3);
                phase
                    .latencies_ns
                    .push(u32::try_from(took.as_nanos()).unwrap_or(u32::MAX));
            }
            Ok((Ok(None), _)) => phase.wrong += 1,
            _ => phase.errors += 1,
        }
    }
    for t in doomed {
        let _ = t.await;
    }
    phase.seconds = started.elapsed().as_secs_f64();
    phase.loads = loads.load(Ordering::Relaxed);
    phase.finish();
    let slowest_ms = phase.max_ms.ceil() as u64;
    (phase, slowest_ms)
}

/// A cold key on every instance at once, `rounds` times: with Redis up, one
/// load fleet-wide; with Redis down, one per instance; never an error.
pub(crate) async fn fleet_stampede(rounds: u64, redis_down: bool, cancel: bool) -> Run {
    let mut server = RedisServer::start().map_err(|e| e.to_string())?;
    let name = match (redis_down, cancel) {
        (true, _) => "stampede-down",
        (false, true) => "stampede-cancel",
        (false, false) => "stampede",
    };
    let caches = instances(name, &server.url()).await?;
    if redis_down {
        server.kill();
    }
    let mut phases = Vec::new();
    let mut worst_ms = 0;
    for round in 0..rounds {
        let (phase, wall) = stampede(&caches, 1_000 + round, cancel).await;
        worst_ms = worst_ms.max(wall);
        phases.push(phase);
    }
    let want_loads = if redis_down {
        STAMPEDE_INSTANCES as u64
    } else {
        1
    };
    let loads_ok = phases.iter().all(|p| p.loads == want_loads);
    let per_round: Vec<u64> = phases.iter().map(|p| p.loads).collect();
    let bound = if redis_down {
        LOAD_TIME + OP_TIMEOUT
    } else {
        LOAD_TIME + 2 * OP_TIMEOUT
    };
    let what = if redis_down {
        "slowest caller ≤ load time + op timeout"
    } else {
        "slowest caller ≤ load time + 2 × op timeout"
    };
    let [errors, wrong] = answer_checks(&phases);
    let checks = vec![
        check(
            format!("loader runs per cold key = {want_loads}"),
            loads_ok,
            format!("{per_round:?}"),
        ),
        errors,
        wrong,
        check(
            what,
            Duration::from_millis(worst_ms) <= bound,
            format!("{worst_ms} ms ≤ {} ms", bound.as_millis()),
        ),
    ];
    Ok(Measured::new(phases, checks))
}

/// Redis at `maxmemory` with `noeviction`: writes are refused, reads of keys
/// already in L2 must go on (the breaker stays closed), callers see no error.
pub(crate) async fn oom(keys: u64) -> Run {
    let server = RedisServer::start_with_args(&["--maxmemory-policy", "noeviction"])
        .map_err(|e| e.to_string())?;
    let url = server.url();
    // Warm L2 from one instance.
    let writer = instance("oom", &url)?;
    for k in 0..keys {
        writer.set(k, k * 3).await.map_err(|e| e.to_string())?;
    }
    let reads = |label: &str, cold: u64| {
        let url = url.clone();
        let label = label.to_owned();
        async move {
            // A fresh instance: every warm key is an L1 miss and an L2 hit,
            // every cold key a load whose write Redis may refuse.
            let reader = instance("oom", &url)?;
            let started = Instant::now();
            let mut phase = PhaseStats {
                name: label,
                ..PhaseStats::default()
            };
            for k in 0..keys {
                for key in [k, cold + k] {
                    let t0 = Instant::now();
                    let got = reader
                        .get_or_load(key, |k| async move { Some(k * 3) })
                        .await;
                    phase.calls += 1;
                    phase
                        .latencies_ns
                        .push(u32::try_from(t0.elapsed().as_nanos()).unwrap_or(u32::MAX));
                    match got {
                        Ok(Some(v)) => phase.wrong += u64::from(v != key * 3),
                        Ok(None) => phase.wrong += 1,
                        Err(_) => phase.errors += 1,
                    }
                }
            }
            phase.seconds = started.elapsed().as_secs_f64();
            let stats = reader.stats();
            phase.loads = stats.loads;
            phase.finish();
            let closed = reader
                .tiered()
                .breaker()
                .is_none_or(|b| b.state().as_str() == "closed");
            Ok::<_, String>((phase, stats.l2_hits, closed))
        }
    };
    let (normal, hits_normal, _) = reads("no OOM", 1_000_000).await?;
    server
        .connect()
        .and_then(|mut c| c.cmd(&["CONFIG", "SET", "maxmemory", "1"]))
        .map_err(|e| e.to_string())?;
    let (full, hits_full, closed) = reads("maxmemory reached", 2_000_000).await?;
    let checks = vec![
        check(
            "caller errors at maxmemory",
            full.errors == 0,
            format!("{}", full.errors),
        ),
        check(
            "wrong values",
            normal.wrong + full.wrong == 0,
            format!("{}", normal.wrong + full.wrong),
        ),
        check(
            "L2 hits on warm keys at maxmemory ≥ 99 % of without",
            hits_full * 100 >= hits_normal * 99,
            format!("{hits_full} vs {hits_normal}"),
        ),
        check("breaker closed at maxmemory", closed, format!("{closed}")),
    ];
    Ok(Measured::new(vec![normal, full], checks))
}
