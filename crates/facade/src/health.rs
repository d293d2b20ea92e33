//! What the cache tells about itself: the health report and the metrics that are
//! read rather than counted, published by a periodic upkeep.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{CacheKey, Codec, DecodeKey};
use cache_tiered::FailMode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::report::{EVICTION_REASONS, HealthReport, L1Report, L2Report};

/// How often a cache publishes its read-at-scrape metrics by itself.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Publishes what is read rather than counted (L1 hits, sizes, evictions,
    /// bus and recovery state) to the metrics recorder every
    /// [`UPKEEP_EVERY`], so a recorder the application installed sees them
    /// without calling [`record_metrics`](Self::record_metrics). Needs a tokio
    /// runtime when the cache is built (without one, call `record_metrics`
    /// yourself); ends when the last handle is dropped.
    pub(crate) fn start_upkeep(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP_EVERY).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                Cache::from_inner(inner).record_metrics();
            }
        });
    }

    /// Records the metrics that are read rather than counted: L1 hits (counted
    /// in striped counters, so a hit does not touch a shared metric), L1 entries,
    /// bound and weight, L1 evictions by reason, invalidation-bus counters and
    /// connection. The cache calls it every [`UPKEEP_EVERY`] by itself (when built
    /// inside a tokio runtime) and the `/metrics` endpoint before every scrape; it
    /// locks each L1 shard briefly to read its counters.
    pub fn record_metrics(&self) {
        let meters = &self.inner.meters;
        let tiered = &self.inner.tiered;
        meters.l1_hit.absolute(self.inner.counters.l1_hits.sum());
        let l1 = tiered.l1().stats();
        meters.l1_entries.set(l1.entries as f64);
        meters.l1_weight.set(l1.weight as f64);
        meters.l1_max_entries.set(tiered.l1().max_entries() as f64);
        for (counter, reason) in meters.evictions.iter().zip(EVICTION_REASONS) {
            counter.absolute(l1.evictions(reason));
        }
        let t = tiered.stats();
        // Memory-only stores fence too (a load racing a removal).
        meters.fills_fenced.absolute(t.fenced);
        if tiered.l2().is_some() {
            meters.bus_messages.absolute(t.bus_messages);
            meters.bus_gaps.absolute(t.bus_gaps);
            meters.bus_publish_errors.absolute(t.publish_errors);
            meters
                .bus_connected
                .set(if tiered.bus_connected() { 1.0 } else { 0.0 });
            meters.bus_replayed.absolute(t.bus_replayed);
            meters.bus_dropped.absolute(t.bus_dropped);
            meters.l2_rejected[0].absolute(t.l2_corrupt);
            meters.l2_rejected[1].absolute(t.l2_oversized);
            meters.bus_reconnects.absolute(t.bus_reconnects);
            meters.recovery_pending.set(t.recovery_pending as f64);
            meters.recovery_replayed.absolute(t.recovery_replayed);
            meters.recovery_dropped.absolute(t.recovery_dropped);
        }
    }

    /// The cache's health: tiers, breaker, hit ratio. Pings Redis (bounded by the
    /// op timeout).
    ///
    /// The verdict is the tiered store's ([`TieredStore::check`](cache_tiered::TieredStore::check)):
    /// healthy when Redis answers within half the op timeout, the breaker is
    /// closed, the bus is connected and no write waits; unhealthy only when
    /// fail-closed and Redis does not answer; degraded otherwise.
    ///
    /// ```
    /// use resilient_cache::{Cache, HealthStatus};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// let report = users.health().await;
    /// assert_eq!(report.status, HealthStatus::Healthy); // memory only: nothing to fail
    /// assert!(report.l2.is_none());
    /// println!("{}", serde_json::to_string(&report)?); // what /health/cache serves
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn health(&self) -> HealthReport {
        let tiered = &self.inner.tiered;
        let l1 = tiered.l1();
        self.inner.meters.l1_entries.set(l1.len() as f64);
        let stats = self.stats();
        let checked = tiered.check().await;
        let l2 = checked.l2.map(|l2| L2Report {
            status: l2.status,
            reachable: l2.redis.latency.is_some() && l2.redis.error.is_none(),
            latency_ms: l2.redis.latency.map(|l| l.as_secs_f64() * 1_000.0),
            breaker: l2.breaker.as_str(),
            bus_connected: l2.bus_connected,
            recovery_pending: l2.recovery_pending,
            reasons: checked.reasons,
            detail: Some(l2.redis.summary()),
        });
        let status = checked.status;
        HealthReport {
            cache: self.inner.name.clone(),
            status,
            fail_mode: match tiered.fail_mode() {
                FailMode::Open => "open",
                FailMode::Closed => "closed",
            },
            l1: L1Report {
                entries: l1.len() as u64,
                max_entries: l1.max_entries() as u64,
                weight: l1.weight(),
            },
            l2,
            hit_ratio: stats.hit_ratio(),
            stats,
        }
    }
}
