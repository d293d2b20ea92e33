//! The health rule of an L1 + L2 cache, and the facts it needs from this store.

use std::hash::Hash;

use cache_breaker::State;
use cache_core::{CacheKey, Codec, DecodeKey, HealthStatus};
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

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Why other instances may not hear from this one right now, if they may not:
    /// the bus is not connected, or writes wait in the recovery queue.
    #[must_use]
    pub fn incoherence(&self) -> Option<String> {
        let l2 = self.inner.l2.as_ref()?;
        let mut why = Vec::new();
        if l2.bus.is_some() && !self.bus_connected() {
            why.push("invalidation bus not connected".to_owned());
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
