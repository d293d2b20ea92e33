//! Graceful shutdown of a cache.

use std::hash::Hash;
use std::time::Duration;

use cache_core::{CacheKey, Codec, DecodeKey};
use cache_tiered::ShutdownReport;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Shuts the cache down before the process exits: no new background work
    /// starts (refresh-ahead stops; a load's L2 write now completes before its
    /// caller is answered), the L2 writes already in flight and the recovery
    /// queue drain within `deadline`, and the bus listener stops. Returns what
    /// could not be finished (Redis unreachable until the deadline): those
    /// writes are lost to L2 and to the other instances.
    ///
    /// Every clone of the cache shares this state; the cache keeps answering
    /// afterwards (from L1, L2 and the loader), without a bus. Call it from the
    /// service's shutdown path, after the server stopped taking requests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilient_cache::Cache;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// users.set(1, "Ada".into()).await?;
    /// let report = users.shutdown(Duration::from_secs(5)).await;
    /// assert!(report.is_complete(), "{report:?}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.inner.tiered.shutdown(deadline).await
    }
}
