//! [`Cache`]: the typed handle and the read path.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use cache_bloom::AtomicBloomFilter;
use cache_core::{CacheKey, Clock, Codec, DecodeKey, Entry, HealthStatus, Postcard, Store};
use cache_singleflight::{FlightError, Group, Role};
use cache_tiered::{FailMode, Tier, TierRead, TieredStore};
use cache_ttl_jitter::{Jitter, RecomputeTime};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;

use crate::builder::CacheBuilder;
use crate::error::Error;
use crate::log::log_warn;
use crate::refresh::RefreshAhead;
use crate::report::{
    CacheStats, Counters, EVICTION_REASONS, HealthReport, L1Report, L2Report, Meters, bump,
};

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
}

pub(crate) struct CacheInner<K, V, C> {
    pub(crate) name: String,
    pub(crate) tiered: TieredStore<K, V, C>,
    /// Shared with background refreshes, which must not hold the cache itself.
    pub(crate) flights: Arc<Group<K, Option<V>, Error>>,
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
pub struct Cache<K, V, C = Postcard> {
    pub(crate) inner: Arc<CacheInner<K, V, C>>,
}

/// What the read path needs past an L1 miss (or a stale L1 entry).
struct L1Miss<K, V, F> {
    key: K,
    l1: Option<Entry<V>>,
    loader: F,
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

/// Options of one write: TTL and tags.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    ttl: Option<Duration>,
    tags: Vec<String>,
}

impl WriteOptions {
    /// The defaults (the cache's default TTL, no tags).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// This write's TTL (still jittered).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Tags for [`Cache::invalidate_tag`].
    #[must_use]
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

impl Cache<(), ()> {
    /// A builder for a cache named `name` (also its Redis namespace).
    pub fn builder(name: impl Into<String>) -> CacheBuilder<Postcard> {
        CacheBuilder::new(name)
    }
}

/// How often a cache publishes its read-at-scrape metrics by itself.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// How a load ended, as seen by the flight's leader.
enum Waited<T> {
    Done(T),
    TimedOut(Duration),
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

    pub(crate) fn bloom_rejects(&self, key: &K) -> bool {
        match &self.inner.bloom {
            Some(bloom) if !bloom.contains(key) => {
                bump(&self.inner.counters.bloom_rejections);
                self.inner.meters.bloom_rejections.increment(1);
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
        bump(&self.inner.counters.l2_hits);
        self.inner.meters.l2_hit.increment(1);
    }

    pub(crate) fn miss(&self) {
        bump(&self.inner.counters.misses);
        self.inner.meters.miss.increment(1);
    }

    /// Counts an error returned to a caller.
    pub(crate) fn failed(&self, e: impl Into<Error>) -> Error {
        bump(&self.inner.counters.errors);
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
        let e = self.inner.tiered.l1().get_sync(key)?;
        if !e.is_fresh(self.inner.clock.recent()) {
            return None;
        }
        self.l1_hit();
        Some(e.into_value())
    }

    async fn get_from_l2(&self, key: &K) -> Result<Option<V>, Error> {
        match self.read_tiers(key, None, |_| true).await {
            TierRead::Fresh(e, _) => Ok(e.into_value()),
            TierRead::Missing { fault: Some(e), .. } => Err(self.failed(e)),
            TierRead::Missing { fault: None, .. } => {
                self.miss();
                Ok(None)
            }
        }
    }

    /// The value for `key`: from L1, else L2, else `loader` — run once however many
    /// callers ask at the same time. `None` from the loader is cached as *absent* for
    /// the negative TTL. See the [crate docs](crate) for the whole read path.
    pub fn get_or_load<F, Fut>(
        &self,
        key: K,
        loader: F,
    ) -> impl Future<Output = Result<Option<V>, Error>>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Option<V>> + Send + 'static,
    {
        self.try_get_or_load(key, move |k| {
            let load = loader(k);
            async move { Ok::<_, std::convert::Infallible>(load.await) }
        })
    }

    /// Like [`get_or_load`](Self::get_or_load) for a fallible loader. When the loader
    /// fails, a stale value within the stale window is served instead; without one,
    /// every coalesced caller gets the same [`Error::Load`].
    pub fn try_get_or_load<F, Fut, E>(
        &self,
        key: K,
        loader: F,
    ) -> impl Future<Output = Result<Option<V>, Error>>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        // By hand, like `get`: the first poll answers a fresh L1 hit; only a miss
        // boxes the rest of the read path.
        let mut args = Some((key, loader));
        let mut rest = None;
        std::future::poll_fn(move |cx| {
            let rest = match &mut rest {
                Some(rest) => rest,
                None => {
                    let Some((key, loader)) = args.take() else {
                        panic!("`try_get_or_load` polled after it completed");
                    };
                    match self.l1_or_miss(key, loader) {
                        Ok(value) => return Poll::Ready(Ok(value)),
                        Err(L1Miss { key, l1, loader }) => {
                            rest.insert(Box::pin(self.load_through(key, l1, loader)))
                        }
                    }
                }
            };
            rest.as_mut().poll(cx)
        })
    }

    /// A fresh L1 hit's value (starting a background refresh when one is due), or
    /// what the rest of the read path needs.
    fn l1_or_miss<F, Fut, E>(&self, key: K, loader: F) -> Result<Option<V>, L1Miss<K, V, F>>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        if self.bloom_rejects(&key) {
            return Ok(None);
        }
        let now = self.inner.clock.recent();
        let l1 = self.inner.tiered.l1().get_sync(&key);
        if let Some(e) = &l1
            && e.is_fresh(now)
        {
            self.l1_hit();
            let value = e.value().cloned();
            if let Some(kind) = self.refresh_due(e, now) {
                self.spawn_refresh(key, l1.clone(), kind, loader);
            }
            return Ok(value);
        }
        Err(L1Miss { key, l1, loader })
    }

    /// `try_get_or_load` past an L1 miss: one flight per key, led by `lead`.
    async fn load_through<F, Fut, E>(
        &self,
        key: K,
        l1: Option<Entry<V>>,
        loader: F,
    ) -> Result<Option<V>, Error>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let this = self.clone();
        let flight_key = key.clone();
        let outcome = self
            .inner
            .flights
            .work(flight_key, move || this.lead(key, l1, loader))
            .await;
        if outcome.role() == Role::Follower {
            bump(&self.inner.counters.coalesced);
            self.inner.meters.coalesced.increment(1);
        }
        match outcome.into_result() {
            Ok(v) => Ok(v),
            Err(FlightError::Failed(e)) => Err(self.failed((*e).clone())),
            Err(_) => Err(self.failed(Error::LoaderPanicked)),
        }
    }

    /// A flight leader's look at the tiers ([`TieredStore::read`]), with the
    /// hit counted by the tier that answered.
    pub(crate) async fn read_tiers(
        &self,
        key: &K,
        stale: Option<Entry<V>>,
        usable: impl Fn(&Entry<V>) -> bool,
    ) -> TierRead<V> {
        let read = self.inner.tiered.read(key, stale, usable).await;
        match &read {
            TierRead::Fresh(_, Tier::L1) => self.l1_hit(),
            TierRead::Fresh(_, Tier::L2) => self.l2_hit(),
            TierRead::Missing { .. } => {}
        }
        read
    }

    /// The flight leader's part of the read path: L1 again, L2, then the loader.
    async fn lead<F, Fut, E>(
        self,
        key: K,
        l1: Option<Entry<V>>,
        loader: F,
    ) -> Result<Option<V>, Error>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let stale = match self.read_tiers(&key, l1, |_| true).await {
            TierRead::Fresh(e, _) => return Ok(e.into_value()),
            TierRead::Missing { fault: Some(e), .. } => return Err(e.into()),
            TierRead::Missing { stale, fault: None } => stale,
        };
        self.miss();
        self.load(key, stale, loader).await
    }

    /// [`load_untraced`](Self::load_untraced) in a `cache_load` span (feature
    /// `tracing`) that records the cache name and the outcome, never the key.
    async fn load<F, Fut, E>(
        &self,
        key: K,
        stale: Option<Entry<V>>,
        loader: F,
    ) -> Result<Option<V>, Error>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        #[cfg(feature = "tracing")]
        {
            use tracing::Instrument;
            let span = tracing::info_span!(
                "cache_load",
                cache = %self.inner.name,
                outcome = tracing::field::Empty
            );
            let result = self
                .load_untraced(key, stale, loader)
                .instrument(span.clone())
                .await;
            span.record("outcome", crate::log::outcome(&result));
            result
        }
        #[cfg(not(feature = "tracing"))]
        {
            self.load_untraced(key, stale, loader).await
        }
    }

    /// Runs the loader as a task that also writes its result, so neither a
    /// cancelled caller nor a soft timeout loses the load. The answer is handed over
    /// as soon as L1 holds it; the L2 write finishes in the task (fail-open), so a
    /// slow Redis does not delay the caller a second time.
    async fn load_untraced<F, Fut, E>(
        &self,
        key: K,
        stale: Option<Entry<V>>,
        loader: F,
    ) -> Result<Option<V>, Error>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let inner = &self.inner;
        bump(&inner.counters.loads);
        let started = Instant::now();
        let fut = loader(key.clone());
        let writer = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let result = fut.await;
            let value = match result {
                Ok(value) => value,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let Some(entry) = writer.loaded_entry(&key, value.clone()) else {
                let _ = tx.send(Ok((value, Ok(()))));
                return;
            };
            // Fail-open answers once L1 holds it (L2 follows in the background).
            let written = writer.inner.tiered.write_back(key, entry).await;
            let _ = tx.send(Ok((value, written)));
        });
        let soft = inner.settings.soft_timeout.filter(|_| stale.is_some());
        let limit = soft.or(inner.settings.hard_timeout);
        let waited = match limit {
            Some(limit) => match tokio::time::timeout(limit, rx).await {
                Ok(done) => Waited::Done(done),
                Err(_) => Waited::TimedOut(limit),
            },
            None => Waited::Done(rx.await),
        };
        let took = started.elapsed();
        inner.meters.load_duration.record(took.as_secs_f64());
        if took >= inner.settings.slow_load {
            log_warn!(cache = %inner.name, took_ms = took.as_millis() as u64, "slow load: the source took longer than the slow-load threshold");
        }
        match waited {
            Waited::Done(Ok(Ok((value, written)))) => {
                inner.recompute.record(took);
                self.count_loaded(value.is_some());
                match written {
                    Err(e) if e.is_backend_fault() => Err(e.into()),
                    // A value the cache refuses (too large, …) is still the answer.
                    _ => Ok(value),
                }
            }
            Waited::Done(Ok(Err(e))) => {
                self.load_failed();
                self.stale_or(stale, Error::Load(Arc::new(e)))
            }
            Waited::Done(Err(_panicked)) => {
                bump(&inner.counters.load_errors);
                inner.meters.load_panic.increment(1);
                self.stale_or(stale, Error::LoaderPanicked)
            }
            Waited::TimedOut(after) => {
                self.load_timed_out();
                match (soft, inner.settings.hard_timeout) {
                    // Serve stale now; the load goes on, bounded by the hard timeout.
                    (Some(soft), Some(hard)) => {
                        let abort = task.abort_handle();
                        tokio::spawn(async move {
                            let rest = hard.saturating_sub(soft);
                            if tokio::time::timeout(rest, task).await.is_err() {
                                abort.abort();
                            }
                        });
                    }
                    (Some(_), None) => {}
                    (None, _) => task.abort(),
                }
                self.stale_or(stale, Error::LoadTimeout(after))
            }
        }
    }

    pub(crate) fn stale_or(
        &self,
        stale: Option<Entry<V>>,
        error: Error,
    ) -> Result<Option<V>, Error> {
        let now = self.inner.clock.now();
        match stale {
            Some(e) if !e.is_expired(now) => {
                bump(&self.inner.counters.stale_served);
                self.inner.meters.stale_served.increment(1);
                Ok(e.into_value())
            }
            _ => Err(error),
        }
    }

    /// Counts a loaded key by outcome: found or absent.
    pub(crate) fn count_loaded(&self, found: bool) {
        let meters = &self.inner.meters;
        let meter = if found {
            &meters.load_ok
        } else {
            &meters.load_absent
        };
        meter.increment(1);
    }

    /// Counts a load whose loader returned an error.
    pub(crate) fn load_failed(&self) {
        bump(&self.inner.counters.load_errors);
        self.inner.meters.load_error.increment(1);
    }

    /// Counts a load that hit its timeout.
    pub(crate) fn load_timed_out(&self) {
        bump(&self.inner.counters.load_timeouts);
        self.inner.meters.load_timeout.increment(1);
    }

    /// What a load of `key` writes: a value joins the bloom guard and gets the
    /// jittered default TTL; *absent* gets the negative TTL (or nothing when
    /// negative caching is off).
    pub(crate) fn loaded_entry(&self, key: &K, value: Option<V>) -> Option<Entry<V>> {
        if value.is_some()
            && let Some(bloom) = &self.inner.bloom
        {
            bloom.insert(key);
        }
        self.make_entry(value, self.inner.settings.default_ttl)
    }

    pub(crate) fn make_entry(&self, value: Option<V>, ttl: Duration) -> Option<Entry<V>> {
        let s = &self.inner.settings;
        let now = self.inner.clock.now();
        match value {
            Some(v) => {
                Some(Entry::new(v, now, s.jitter.apply(ttl)).with_stale_window(s.stale_window))
            }
            None if s.negative_ttl.is_zero() => None,
            None => Some(Entry::absent(now, s.jitter.apply(s.negative_ttl))),
        }
    }

    /// Stores `value` with the default TTL (jittered) in both tiers and tells other
    /// instances to drop their copies.
    pub async fn set(&self, key: K, value: V) -> Result<(), Error> {
        self.set_with(key, value, WriteOptions::new()).await
    }

    /// Stores `value` with this write's TTL and tags.
    pub async fn set_with(&self, key: K, value: V, options: WriteOptions) -> Result<(), Error> {
        let ttl = options.ttl.unwrap_or(self.inner.settings.default_ttl);
        let Some(entry) = self.make_entry(Some(value), ttl) else {
            return Ok(());
        };
        let entry = if options.tags.is_empty() {
            entry
        } else {
            entry
                .with_tags(options.tags)
                .map_err(|e| self.failed(cache_core::CacheError::from(e)))?
        };
        if let Some(bloom) = &self.inner.bloom {
            bloom.insert(&key);
        }
        self.inner
            .tiered
            .put(key, entry)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Stores several values with the default TTL (one pipelined L2 round trip).
    pub async fn set_many(&self, values: Vec<(K, V)>) -> Result<(), Error> {
        let ttl = self.inner.settings.default_ttl;
        let entries: Vec<(K, Entry<V>)> = values
            .into_iter()
            .filter_map(|(k, v)| {
                if let Some(bloom) = &self.inner.bloom {
                    bloom.insert(&k);
                }
                self.make_entry(Some(v), ttl).map(|e| (k, e))
            })
            .collect();
        self.inner
            .tiered
            .put_many(entries)
            .await
            .map_err(|e| self.failed(e))
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
            .get_many(&wanted)
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

    /// Removes `key` from both tiers and from other instances' L1. `true` when
    /// either tier held it.
    ///
    /// When Redis cannot be reached (down, paused, breaker open), this instance's
    /// L1 changes at once and the rest — the L2 delete and the message to other
    /// instances — waits in the recovery queue and is applied as soon as Redis
    /// answers again, before any later write; the answer then reflects L1 only.
    /// [`TieredStore::recovery_pending`] (on [`tiered`](Self::tiered)) and
    /// `cache_recovery_queue_depth` show what still waits. The same holds for
    /// [`set`](Self::set), [`set_many`](Self::set_many),
    /// [`invalidate_tag`](Self::invalidate_tag) and
    /// [`invalidate_prefix`](Self::invalidate_prefix).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future after it started may leave L1 changed and the L2 part
    /// not sent; nothing is queued for a write that was never attempted.
    pub async fn remove(&self, key: &K) -> Result<bool, Error> {
        self.inner
            .tiered
            .remove(key)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Removes every entry tagged `tag`, in both tiers and on other instances.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, Error> {
        self.inner
            .tiered
            .invalidate_tag(tag)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Removes every key whose encoding starts with `prefix` (e.g. `"user:42:"` for
    /// all `("user", 42, _)` keys), in both tiers and on other instances.
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, Error> {
        self.inner
            .tiered
            .invalidate_prefix(prefix)
            .await
            .map_err(|e| self.failed(e))
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
        if tiered.l2().is_some() {
            let t = tiered.stats();
            meters.bus_messages.absolute(t.bus_messages);
            meters.bus_gaps.absolute(t.bus_gaps);
            meters.bus_publish_errors.absolute(t.publish_errors);
            meters
                .bus_connected
                .set(if tiered.bus_connected() { 1.0 } else { 0.0 });
            meters.bus_replayed.absolute(t.bus_replayed);
            meters.bus_reconnects.absolute(t.bus_reconnects);
            meters.recovery_pending.set(t.recovery_pending as f64);
            meters.recovery_replayed.absolute(t.recovery_replayed);
            meters.recovery_dropped.absolute(t.recovery_dropped);
        }
    }

    /// The cache's health: tiers, breaker, hit ratio. Pings Redis (bounded by the
    /// op timeout).
    ///
    /// The rule is [`cache_tiered::combined_health`]: healthy when Redis answers
    /// within half the op timeout and the breaker is closed; unhealthy only when
    /// fail-closed and Redis does not answer; degraded otherwise.
    pub async fn health(&self) -> HealthReport {
        let tiered = &self.inner.tiered;
        let l1 = tiered.l1();
        self.inner.meters.l1_entries.set(l1.len() as f64);
        let stats = self.stats();
        let mut status = HealthStatus::Healthy;
        let l2 = match (tiered.l2(), tiered.breaker()) {
            (Some(store), Some(breaker)) => {
                let h = store.check().await;
                let l2_status = h.status(store.op_timeout());
                let state = breaker.state();
                let incoherence = tiered.incoherence();
                status = cache_tiered::combined_health(
                    l2_status,
                    state,
                    tiered.fail_mode(),
                    incoherence.is_none(),
                );
                let mut reasons = Vec::new();
                if l2_status != HealthStatus::Healthy {
                    reasons.push(match &h.error {
                        Some(e) => format!("redis {}: {e}", l2_status.as_str()),
                        None => format!("redis {}", l2_status.as_str()),
                    });
                }
                if state != cache_breaker::State::Closed {
                    reasons.push(format!("breaker {}", state.as_str()));
                }
                reasons.extend(incoherence);
                Some(L2Report {
                    status: l2_status,
                    reachable: h.latency.is_some() && h.error.is_none(),
                    latency_ms: h.latency.map(|l| l.as_secs_f64() * 1_000.0),
                    breaker: state.as_str(),
                    bus_connected: tiered.bus_connected(),
                    recovery_pending: tiered.recovery_pending() as u64,
                    reasons,
                    detail: Some(h.summary()),
                })
            }
            _ => None,
        };
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
