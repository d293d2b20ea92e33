//! `get_many_or_load`: a batch read that loads only what no tier has, once.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{CacheKey, Codec, DecodeKey, Entry};
use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::error::Error;
use crate::load::{flight_error, spawn_load};
use crate::options::{LoadOptions, Shape};
use crate::report::Event;

/// What the batch loader produced, shared with every key's flight.
type Batch<K, V> = Result<Arc<HashMap<K, V>>, Error>;

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Values for many keys, in `keys` order: L1 first, then **one** L2 round trip
    /// for the rest, then **one** call of `loader` with exactly the keys no tier
    /// had and no other caller is already loading.
    ///
    /// - A key another caller is loading (`get_or_load`, another batch) is joined,
    ///   not loaded twice; keys of this batch are joined by those callers too.
    /// - Keys the loader does not return are cached as *absent* (negative TTL).
    /// - L2 faults are misses (fail-open), as in `get_or_load`.
    /// - If the loader fails, keys with a stale value within the stale window get
    ///   it; if any key has none, the call returns the loader's error.
    /// - Duplicate keys are looked up once.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use resilient_cache::Cache;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// users.set(1, "cached".to_owned()).await?;
    /// let got = users
    ///     .get_many_or_load(&[1, 2, 3], |missing| async move {
    ///         assert_eq!(missing, vec![2, 3]); // only what no tier had
    ///         Ok::<_, std::io::Error>(HashMap::from([(2, "loaded".to_owned())]))
    ///     })
    ///     .await?;
    /// assert_eq!(got, vec![Some("cached".into()), Some("loaded".into()), None]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn get_many_or_load<F, Fut, E>(
        &self,
        keys: &[K],
        loader: F,
    ) -> Result<Vec<Option<V>>, Error>
    where
        F: FnOnce(Vec<K>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<HashMap<K, V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        self.get_many_or_load_with(keys, &LoadOptions::new(), loader)
            .await
    }

    /// [`get_many_or_load`](Self::get_many_or_load) with this call's
    /// [`LoadOptions`]: the loaded entries get its TTL, negative TTL, stale window
    /// and tags (every loaded key the same tags); its hard timeout bounds the
    /// loader.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use resilient_cache::{Cache, LoadOptions};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// let team = LoadOptions::new().tags(["team:3"]);
    /// users
    ///     .get_many_or_load_with(&[1, 2], &team, |ids| async move {
    ///         Ok::<_, std::io::Error>(ids.into_iter().map(|id| (id, format!("user {id}"))).collect::<HashMap<_, _>>())
    ///     })
    ///     .await?;
    /// assert_eq!(users.invalidate_tag("team:3").await?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn get_many_or_load_with<F, Fut, E>(
        &self,
        keys: &[K],
        options: &LoadOptions,
        loader: F,
    ) -> Result<Vec<Option<V>>, Error>
    where
        F: FnOnce(Vec<K>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<HashMap<K, V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let inner = &self.inner;
        let shape = options
            .shape(&inner.settings)
            .map_err(|e| self.failed(cache_core::CacheError::from(e)))?;
        let hard_timeout = options.timeouts(&inner.settings).1;
        let now = inner.clock.now();
        let mut found: HashMap<K, Option<V>> = HashMap::with_capacity(keys.len());
        let mut stale: HashMap<K, Entry<V>> = HashMap::new();
        let mut wanted: Vec<K> = Vec::new();
        let mut seen = HashSet::with_capacity(keys.len());
        for k in keys {
            if !seen.insert(k) {
                continue;
            }
            if self.bloom_rejects(k) {
                found.insert(k.clone(), None);
                continue;
            }
            let l1 = shape.route.read_l1.then(|| inner.tiered.l1().get_sync(k));
            match l1.flatten() {
                Some(e) if e.is_fresh(now) => {
                    self.l1_hit();
                    found.insert(k.clone(), e.into_value());
                }
                other => {
                    if let Some(e) = other {
                        stale.insert(k.clone(), e);
                    }
                    wanted.push(k.clone());
                }
            }
        }
        if !wanted.is_empty() && inner.tiered.l2().is_some() && shape.route.read_l2 {
            // One round trip for everything L1 lacked (fail-open: a fault is a miss).
            let from_l2 = inner
                .tiered
                .read_many_l2_routed(&wanted, shape.route)
                .await
                .map_err(|e| self.failed(e))?;
            let mut still = Vec::with_capacity(wanted.len());
            for (k, e) in wanted.into_iter().zip(from_l2) {
                match e {
                    Some(e) if e.is_fresh(now) => {
                        self.l2_hit();
                        found.insert(k, e.into_value());
                    }
                    other => {
                        if let Some(e) = other
                            && let Some(kept) = cache_tiered::longer_lived(stale.remove(&k), e)
                        {
                            stale.insert(k.clone(), kept);
                        }
                        still.push(k);
                    }
                }
            }
            wanted = still;
        }
        if !wanted.is_empty() {
            let loaded = self
                .load_batch(wanted, &stale, loader, (shape, hard_timeout))
                .await?;
            found.extend(loaded);
        }
        Ok(keys
            .iter()
            .map(|k| found.get(k).cloned().flatten())
            .collect())
    }

    /// Joins or leads one flight per key; the keys this call leads go to the
    /// loader together.
    async fn load_batch<F, Fut, E>(
        &self,
        wanted: Vec<K>,
        stale: &HashMap<K, Entry<V>>,
        loader: F,
        how: (Shape, Option<Duration>),
    ) -> Result<Vec<(K, Option<V>)>, Error>
    where
        F: FnOnce(Vec<K>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<HashMap<K, V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::watch::channel::<Option<Batch<K, V>>>(None);
        let leaders = parking_lot::Mutex::new(Vec::new());
        let mut flights: Vec<_> = wanted
            .iter()
            .map(|k| {
                let mut rx = rx.clone();
                let leaders = &leaders;
                let key = k.clone();
                self.inner
                    .loads
                    .work_detached(
                        k.clone(),
                        move || {
                            leaders.lock().push(key.clone());
                            async move {
                                let batch = rx
                                    .wait_for(Option::is_some)
                                    .await
                                    .map_err(|_| Error::LoaderPanicked)?
                                    .clone();
                                match batch {
                                    Some(Ok(values)) => Ok(values.get(&key).cloned()),
                                    Some(Err(e)) => Err(e),
                                    None => Err(Error::LoaderPanicked),
                                }
                            }
                        },
                        spawn_load,
                    )
                    .boxed()
            })
            .collect();
        // One poll each registers every key as leader (its closure runs now) or
        // follower of someone else's load.
        for f in &mut flights {
            let _ = futures_util::poll!(f.as_mut());
        }
        let mine = std::mem::take(&mut *leaders.lock());
        if !mine.is_empty() {
            for _ in &mine {
                self.miss();
            }
            // A task of its own: the flights of the keys this call leads wait for
            // it, whether or not this caller stays.
            let this = self.clone();
            tokio::spawn(async move {
                let _ = tx.send(Some(this.run_batch_loader(mine, loader, how).await));
            });
        }
        let outcomes = futures_util::future::join_all(flights).await;
        let mut out = Vec::with_capacity(wanted.len());
        let mut first_error = None;
        for (k, outcome) in wanted.into_iter().zip(outcomes) {
            self.count_follower(outcome.role());
            match outcome.into_result().map_err(flight_error) {
                Ok(v) => out.push((k, v)),
                Err(e) => match self.stale_or(stale.get(&k).cloned(), e) {
                    Ok(v) => out.push((k, v)),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                },
            }
        }
        match first_error {
            Some(e) => Err(self.failed(e)),
            None => Ok(out),
        }
    }

    /// Calls the loader once, writes what it returned (and *absent* for what it
    /// did not) to both tiers, and counts.
    async fn run_batch_loader<F, Fut, E>(
        &self,
        keys: Vec<K>,
        loader: F,
        (shape, hard_timeout): (Shape, Option<Duration>),
    ) -> Batch<K, V>
    where
        F: FnOnce(Vec<K>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<HashMap<K, V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let inner = &self.inner;
        inner.counters.record(&inner.meters, Event::LoadStarted);
        let started = Instant::now();
        // Before the loader reads anything: keys invalidated while it runs
        // are not cached with what it returns.
        let since = inner.tiered.l1().fence();
        let fut = loader(keys.clone());
        let result = match hard_timeout {
            Some(limit) => match tokio::time::timeout(limit, fut).await {
                Ok(r) => r.map_err(|e| Error::Load(Arc::from(e.into()))),
                Err(_) => {
                    self.load_timed_out();
                    return Err(Error::LoadTimeout(limit));
                }
            },
            None => fut.await.map_err(|e| Error::Load(Arc::from(e.into()))),
        };
        let took = started.elapsed();
        inner.meters.load_duration.record(took.as_secs_f64());
        let values = match result {
            Ok(values) => values,
            Err(e) => {
                self.load_failed();
                return Err(e);
            }
        };
        inner.recompute.record(took);
        let mut entries = Vec::with_capacity(keys.len());
        for k in keys {
            let value = values.get(&k).cloned();
            self.count_loaded(value.is_some());
            if let Some(entry) = self.loaded_entry(&k, value, &shape) {
                entries.push((k, entry));
            }
        }
        // Fail-open: L1 holds the batch, L2 follows (faults counted, absorbed).
        if let Err(e) = inner
            .tiered
            .write_back_many_routed(entries, shape.route, since)
            .await
            && e.is_backend_fault()
        {
            return Err(e.into());
        }
        // Keys the loader returned that nobody asked for are not cached.
        Ok(Arc::new(values))
    }
}
