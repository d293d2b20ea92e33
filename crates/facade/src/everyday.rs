//! The everyday API users know from moka: `contains_key`, `entry_count`,
//! `weighted_size`, `invalidate_entries_if`, and an entry's remaining TTL.

use std::hash::Hash;
use std::time::Duration;

use cache_core::{CacheKey, Codec, DecodeKey, Entry};
use cache_tiered::TierRead;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::error::Error;

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Whether this instance's L1 holds a fresh value for `key` (not an *absent*
    /// marker). Local and synchronous: it never asks L2, counts nothing and
    /// changes no eviction state.
    ///
    /// ```
    /// use resilient_cache::Cache;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// users.set(7, "Ada".into()).await?;
    /// assert!(users.contains_key(&7));
    /// assert!(!users.contains_key(&8));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn contains_key(&self, key: &K) -> bool {
        let now = self.inner.clock.recent();
        self.inner
            .tiered
            .l1()
            .peek_sync(key)
            .is_some_and(|e| e.is_fresh(now) && !e.is_absent())
    }

    /// Entries in this instance's L1 (values and *absent* markers, expired ones
    /// not yet dropped included).
    ///
    /// ```
    /// use resilient_cache::Cache;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// users.set(1, "a".into()).await?;
    /// users.set(2, "b".into()).await?;
    /// assert_eq!(users.entry_count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.inner.tiered.l1().len() as u64
    }

    /// Total weight held in this instance's L1, in the units of the weigher
    /// ([`CacheBuilder::weigher`](crate::CacheBuilder::weigher); without one,
    /// `size_of::<K>() + size_of::<V>()` per value, the shallow size).
    ///
    /// ```
    /// use resilient_cache::Cache;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let docs: Cache<u64, String> = Cache::builder("docs")
    ///     .max_weight(1 << 20)
    ///     .weigher(|_: &u64, v: &String| v.len() as u64)
    ///     .build()?;
    /// docs.set(1, "x".repeat(100)).await?;
    /// assert_eq!(docs.weighted_size(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn weighted_size(&self) -> u64 {
        self.inner.tiered.l1().weight()
    }

    /// Drops every entry of this instance's L1 for which `pred(key, value)` is
    /// true (*absent* markers are not offered); returns how many. Local only:
    /// L2 and other instances keep their copies (use tags, prefixes or `remove`
    /// for those). Runs over the whole L1, shard by shard.
    ///
    /// ```
    /// use resilient_cache::Cache;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// for id in 0..10 {
    ///     users.set(id, format!("user {id}")).await?;
    /// }
    /// assert_eq!(users.invalidate_entries_if(|id, _| id % 2 == 0), 5);
    /// assert!(!users.contains_key(&4) && users.contains_key(&5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn invalidate_entries_if(&self, mut pred: impl FnMut(&K, &V) -> bool) -> u64 {
        self.inner
            .tiered
            .l1()
            .remove_where(|k, e| e.value().is_some_and(|v| pred(k, v)))
    }

    /// How long `key` stays fresh: from this instance's L1, else from L2 (one
    /// round trip). `None` when neither holds a fresh value (an *absent* marker
    /// included). Never loads.
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilient_cache::{Cache, Jitter, WriteOptions};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").jitter(Jitter::None).build()?;
    /// users.set_with(7, "Ada".into(), WriteOptions::new().ttl(Duration::from_secs(30))).await?;
    /// let left = users.time_to_live(&7).await?.expect("cached");
    /// assert!(left <= Duration::from_secs(30) && left > Duration::from_secs(29));
    /// assert_eq!(users.time_to_live(&8).await?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn time_to_live(&self, key: &K) -> Result<Option<Duration>, Error> {
        let now = self.inner.clock.now();
        let left = |e: &Entry<V>| (!e.is_absent() && e.is_fresh(now)).then(|| e.fresh_ttl(now));
        if let Some(e) = self.inner.tiered.l1().peek_sync(key)
            && let Some(ttl) = left(&e)
        {
            return Ok(Some(ttl));
        }
        if self.inner.tiered.l2().is_none() {
            return Ok(None);
        }
        match self.inner.tiered.read_l2(key, None, |_| true).await {
            TierRead::Fresh(e, _) => Ok(left(&e)),
            TierRead::Missing { fault: Some(e), .. } => Err(self.failed(e)),
            TierRead::Missing { fault: None, .. } => Ok(None),
        }
    }
}
