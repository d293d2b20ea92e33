//! `churn`: keys changed at the source and invalidated in bursts by a writer
//! instance while reader instances keep loading them, the readers farther
//! from Redis than the writer. Nothing fails; what is measured is the race
//! every cache-aside fleet has: a load that read the source before a change
//! writes its value after the change's invalidation removed the key. With
//! the loader farther from Redis than the invalidator, the delete lands first
//! and its bus message (one round trip of the writer's later) can reach the
//! loader after its write returned. Once the churn stops, every reader must
//! answer, and L2 must hold, the newest version of every key.

use std::time::Duration;

use cache_core::Store;
use cache_testkit::{FaultProxy, RedisServer};

use crate::harness::{Fleet, VERSION_SPAN};
use crate::{HOT_KEYS, Measured, Run, Timing, answer_checks, check};

/// The writer's distance from Redis, each way.
const WRITER_MS: u64 = 3;
/// The readers' distances from Redis, each way.
const READERS_MS: [u64; 3] = [6, 8, 10];
/// Invalidations per burst (one key).
const BURST: usize = 3;

/// Runs the scenario: warm, churn under load, rest, then read every key
/// everywhere.
pub(crate) async fn churn(t: Timing) -> Run {
    let server = RedisServer::start().map_err(|e| e.to_string())?;
    let proxies = (0..=READERS_MS.len())
        .map(|_| FaultProxy::start(server.addr()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut caches = proxies
        .iter()
        .map(|p| crate::cache("churn", &crate::Redis::Url(p.url())))
        .collect::<Result<Vec<_>, _>>()?;
    let writer = caches.remove(0);
    let mut f = Fleet::new(caches, HOT_KEYS);
    if !f.wait_for_buses().await || !writer.tiered().bus_connected() {
        return Err("the invalidation buses did not connect".into());
    }
    f.warm().await;
    for (p, ms) in proxies
        .iter()
        .zip(std::iter::once(WRITER_MS).chain(READERS_MS))
    {
        p.set_latency(Duration::from_millis(ms));
    }
    f.start_load("churn");
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    let mut bursts = 0u64;
    let started = std::time::Instant::now();
    while started.elapsed() < t.churn {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = x % HOT_KEYS;
        for j in 0..BURST {
            f.source.bump(key);
            let _ = writer.remove(&key).await;
            // Now and then the next change lands while a reader reloads.
            tokio::time::sleep(Duration::from_millis((x >> (8 * j)) % 64)).await;
        }
        bursts += 1;
    }
    f.begin_phase("rest");
    // Let writes in flight, bus messages and take-backs settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fenced = f.fenced();
    let (mut stale_l1, mut stale_l2, mut unread) = (0u64, 0u64, 0u64);
    for key in 0..HOT_KEYS {
        let newest = f.source.version(key);
        if let Some(l2) = f.caches[0].tiered().l2() {
            match Store::<u64, u64>::get(l2, &key).await {
                Ok(Some(e)) => {
                    if e.value().is_some_and(|v| v % VERSION_SPAN < newest) {
                        stale_l2 += 1;
                    }
                }
                Ok(None) => {}
                Err(_) => unread += 1,
            }
        }
        for c in &f.caches {
            match c.get(&key).await {
                Ok(Some(v)) if v % VERSION_SPAN < newest => stale_l1 += 1,
                Ok(_) => {}
                Err(_) => unread += 1,
            }
        }
    }
    let phases = f.finish().await;
    let invalidations = bursts * BURST as u64;
    let mut checks = Vec::from(answer_checks(&phases));
    checks.extend([
        check(
            "keys older than the source at rest, read through each reader",
            stale_l1 == 0 && unread == 0,
            format!(
                "{stale_l1} of {} reads ({invalidations} invalidations; writes taken back or fills refused: {fenced}; unreadable {unread})",
                HOT_KEYS * READERS_MS.len() as u64
            ),
        ),
        check(
            "keys older than the source at rest in L2",
            stale_l2 == 0,
            format!("{stale_l2} of {HOT_KEYS}"),
        ),
    ]);
    Ok(Measured::new(phases, checks))
}
