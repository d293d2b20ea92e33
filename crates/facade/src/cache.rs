//! [`Cache`]: the typed handle and the read path.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use cache_bloom::AtomicBloomFilter;
use cache_core::{CacheKey, Clock, Codec, DecodeKey, Postcard};
use cache_singleflight::Group;
use cache_tiered::{TierRead, TieredStore};
use cache_ttl_jitter::{Jitter, RecomputeTime};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;

use crate::error::Error;
use crate::refresh::policy::RefreshAhead;
use crate::report::{CacheStats, Counters, Event, Meters};

pub(crate) struct Settings {
    pub(crate) default_ttl: Duration,
    pub(crate) negative_ttl: Duration,
    pub(crate) jitter: Jitter,
    pub(crate) stale_window: Duration,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    /// Loads this slow are logged.
    pub(crate) slow_load: Duration,
    pub(crate) refresh: Option<RefreshAhead>,
    /// Fleet single flight: lease ttl and longest wait (`None`: off).
    pub(crate) fleet: Option<(Duration, Duration)>,
}

pub(crate) struct CacheInner<K, V, C> {
    pub(crate) name: String,
    pub(crate) tiered: TieredStore<K, V, C>,
    /// Shared with background refreshes, which must not hold the cache itself.
    pub(crate) flights: Arc<Group<K, Option<V>, Error>>,
    /// Loads in progress, one detached flight per key (batches and refreshes
    /// join them too): each belongs to its load's task, not to a caller.
    pub(crate) loads: Arc<Group<K, Option<V>, Error>>,
    /// δ for XFetch: the moving average of load times.
    pub(crate) recompute: RecomputeTime,
    /// Keys with a background refresh running, and how to stop it.
    pub(crate) refreshing: Mutex<HashMap<K, AbortHandle>>,
    pub(crate) settings: Settings,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) bloom: Option<Arc<AtomicBloomFilter>>,
    pub(crate) counters: Counters,
    pub(crate) meters: Meters,
}

impl<K, V, C> Drop for CacheInner<K, V, C> {
    /// The last handle is gone: no refresh outlives it.
    fn drop(&mut self) {
        for (_, task) in self.refreshing.get_mut().drain() {
            task.abort();
        }
    }
}

/// A typed cache handle: L1, optional Redis L2 and every protection, behind
/// `get_or_load`. Cheap to clone (clones share everything).
///
/// ```
/// use resilient_cache::Cache;
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let users: Cache<u64, String> = Cache::builder("users").build()?;
/// let name = users
///     .get_or_load(7, |id| async move { Some(format!("user {id}")) }) // once per key
///     .await?;
/// assert_eq!(name.as_deref(), Some("user 7"));
/// assert_eq!(users.get(&7).await?.as_deref(), Some("user 7")); // now an L1 hit
/// users.remove(&7).await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Cache<K, V, C = Postcard> {
    pub(crate) inner: Arc<CacheInner<K, V, C>>,
}

impl<K, V, C> Clone for Cache<K, V, C> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, C> std::fmt::Debug for Cache<K, V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    pub(crate) fn from_inner(inner: Arc<CacheInner<K, V, C>>) -> Self {
        Cache { inner }
    }

    /// The cache's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The tiered store underneath (L1, L2, breaker).
    #[must_use]
    pub fn tiered(&self) -> &TieredStore<K, V, C> {
        &self.inner.tiered
    }

    /// Counters since the cache was built (no metrics recorder needed).
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    #[inline]
    pub(crate) fn bloom_rejects(&self, key: &K) -> bool {
        match &self.inner.bloom {
            Some(bloom) if !bloom.contains(key) => {
                self.inner
                    .counters
                    .record(&self.inner.meters, Event::BloomRejection);
                true
            }
            _ => false,
        }
    }

    /// Counts an L1 hit: one striped counter, published to the metrics recorder
    /// by [`record_metrics`](Self::record_metrics) rather than on every hit.
    pub(crate) fn l1_hit(&self) {
        self.inner.counters.l1_hits.bump();
    }

    pub(crate) fn l2_hit(&self) {
        self.inner.counters.record(&self.inner.meters, Event::L2Hit);
    }

    pub(crate) fn miss(&self) {
        self.inner.counters.record(&self.inner.meters, Event::Miss);
    }

    /// Counts an error returned to a caller.
    pub(crate) fn failed(&self, e: impl Into<Error>) -> Error {
        self.inner
            .counters
            .record(&self.inner.meters, Event::CallerError);
        e.into()
    }

    /// The value for `key` if the cache holds a fresh one (L1, then L2); never loads.
    pub fn get<'a>(&'a self, key: &'a K) -> impl Future<Output = Result<Option<V>, Error>> + 'a {
        // Written by hand rather than as an `async fn`: the first poll answers an
        // L1 hit without building an async state machine around it, and only a
        // miss boxes the L2 read. Nothing happens before the first poll.
        let mut l2 = None;
        std::future::poll_fn(move |cx| {
            let read = match &mut l2 {
                Some(read) => read,
                None => {
                    if self.bloom_rejects(key) {
                        return Poll::Ready(Ok(None));
                    }
                    if let Some(v) = self.fresh_in_l1(key) {
                        return Poll::Ready(Ok(v));
                    }
                    if self.inner.tiered.l2().is_none() {
                        // Memory only: a miss needs no boxed future.
                        self.miss();
                        return Poll::Ready(Ok(None));
                    }
                    l2.insert(Box::pin(self.get_from_l2(key)))
                }
            };
            read.as_mut().poll(cx)
        })
    }

    /// The value of a fresh L1 entry (`Some(None)` for a fresh *absent* marker),
    /// counted as an L1 hit.
    #[inline]
    fn fresh_in_l1(&self, key: &K) -> Option<Option<V>> {
        // The L1 judges freshness by the same clock (the builder shares it).
        let v = self.inner.tiered.l1().get_fresh_sync(key)?;
        self.l1_hit();
        Some(v)
    }

    async fn get_from_l2(&self, key: &K) -> Result<Option<V>, Error> {
        // `get` has just looked in L1 and joins no flight: L2 only.
        match self.inner.tiered.read_l2(key, None, |_| true).await {
            TierRead::Fresh(e, _) => {
                self.l2_hit();
                Ok(e.into_value())
            }
            TierRead::Missing { fault: Some(e), .. } => Err(self.failed(e)),
            TierRead::Missing { fault: None, .. } => {
                self.miss();
                Ok(None)
            }
        }
    }

    /// Fresh values for several keys (L1, then one L2 round trip for the rest).
    /// Each key counts as one request: an L1 hit, an L2 hit or a miss.
    pub async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>, Error> {
        let mut out: Vec<Option<V>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match self.fresh_in_l1(k) {
                Some(v) => out.push(v),
                None => {
                    out.push(None);
                    missing.push(i);
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        if self.inner.tiered.l2().is_none() {
            missing.iter().for_each(|_| self.miss());
            return Ok(out);
        }
        let wanted: Vec<K> = missing.iter().map(|&i| keys[i].clone()).collect();
        let now = self.inner.clock.recent();
        let entries = self
            .inner
            .tiered
            .read_many_l2(&wanted)
            .await
            .map_err(|e| self.failed(e))?;
        for (i, e) in missing.into_iter().zip(entries) {
            match e.filter(|e| e.is_fresh(now)) {
                Some(e) => {
                    self.l2_hit();
                    out[i] = e.into_value();
                }
                None => self.miss(),
            }
        }
        Ok(out)
    }
}
