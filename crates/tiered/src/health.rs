//! The one place that decides whether an L1 + L2 cache is healthy, degraded or
//! unhealthy: [`TieredStore::check`] gathers the facts (a Redis check, the
//! breaker, the bus, the recovery queue) and [`combined_health`] judges them.
//! `Store::health` and the facade's health report both read this verdict.

use std::hash::Hash;

use cache_breaker::State;
use cache_core::{CacheKey, Codec, DecodeKey, HealthStatus};
use cache_store_redis::RedisHealth;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::FailMode;
use crate::tiered::TieredStore;

/// The health of an L1 + L2 cache from the L2's own health, its breaker, the
/// fail mode and whether other instances can hear from this one; the one rule
/// shared by [`TieredStore`]'s `health` and the facade.
///
/// Healthy only when L2 is healthy (answers within half its op timeout), the
/// breaker is closed, the invalidation bus (if any) is connected and no write
/// waits in the recovery queue. Unhealthy only when fail-closed and L2 does not
/// answer, since then callers get errors. Everything in between is degraded: the
/// cache answers from L1 and the loader, but other instances may serve copies
/// this one has invalidated.
#[must_use]
pub fn combined_health(
    l2: HealthStatus,
    breaker: State,
    mode: FailMode,
    coherent: bool,
) -> HealthStatus {
    match (l2, breaker, mode, coherent) {
        (HealthStatus::Unhealthy, _, FailMode::Closed, _) => HealthStatus::Unhealthy,
        (HealthStatus::Healthy, State::Closed, _, true) => HealthStatus::Healthy,
        _ => HealthStatus::Degraded,
    }
}

/// The verdict on an L1 + L2 cache and the facts behind it; see
/// [`TieredStore::check`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TierHealth {
    /// Healthy, degraded or unhealthy, by [`combined_health`].
    pub status: HealthStatus,
    /// The L2 side; `None` for an L1-only store (always healthy).
    pub l2: Option<L2Health>,
    /// Why the status is not healthy, one line per reason.
    pub reasons: Vec<String>,
}

/// The L2 facts of a [`TierHealth`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct L2Health {
    /// What the Redis check found (latency, version, role, every cluster master).
    pub redis: RedisHealth,
    /// Redis's own status (by its latency against the op timeout).
    pub status: HealthStatus,
    /// The breaker's state.
    pub breaker: State,
    /// Whether the invalidation bus is connected (`false` without a bus).
    pub bus_connected: bool,
    /// Writes and invalidations waiting in the recovery queue.
    pub recovery_pending: u64,
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Checks the tiers (pings Redis, bounded by the op timeout) and judges them.
    pub async fn check(&self) -> TierHealth {
        let Some(l2) = &self.inner.l2 else {
            return TierHealth {
                status: HealthStatus::Healthy,
                l2: None,
                reasons: Vec::new(),
            };
        };
        let redis = l2.store.check().await;
        let redis_status = redis.status(l2.store.op_timeout());
        if redis.latency.is_some() && redis.error.is_none() {
            self.breaker_saw_redis_answer();
        }
        let breaker = l2.breaker.state();
        let incoherence = self.incoherence();
        let status = combined_health(
            redis_status,
            breaker,
            self.inner.mode,
            incoherence.is_none(),
        );
        let mut reasons = Vec::new();
        if redis_status != HealthStatus::Healthy {
            reasons.push(match &redis.error {
                Some(e) => format!("redis {}: {e}", redis_status.as_str()),
                None => format!("redis {}", redis_status.as_str()),
            });
        }
        if breaker != State::Closed {
            reasons.push(format!("breaker {}", breaker.as_str()));
        }
        reasons.extend(incoherence);
        TierHealth {
            status,
            l2: Some(L2Health {
                redis,
                status: redis_status,
                breaker,
                bus_connected: self.bus_connected(),
                recovery_pending: self.recovery_pending() as u64,
            }),
            reasons,
        }
    }

    /// Why other instances may not hear from this one right now, if they may not:
    /// the bus is not connected, or writes wait in the recovery queue.
    #[must_use]
    pub fn incoherence(&self) -> Option<String> {
        let l2 = self.inner.l2.as_ref()?;
        let mut why = Vec::new();
        if let Some(bus) = &l2.bus
            && !self.bus_connected()
        {
            let denied = self
                .inner
                .bus_status
                .lock()
                .as_ref()
                .is_some_and(cache_store_redis::BusStatus::is_denied);
            why.push(if denied {
                format!(
                    "invalidation bus refused by Redis's ACL: the user needs read and write access \
                     to the stream key `{}` (XREAD, XADD, XINFO, XREVRANGE, EXISTS)",
                    bus.stream_key()
                )
            } else {
                "invalidation bus not connected".to_owned()
            });
        }
        let pending = self.recovery_pending();
        if pending > 0 {
            why.push(format!(
                "{pending} writes waiting for L2 in the recovery queue"
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}
