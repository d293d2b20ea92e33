//! Writes: `set`, `set_many`, `remove`, `invalidate_tag`, `invalidate_prefix`.

use std::hash::Hash;
use std::time::Duration;

use cache_core::{CacheKey, Codec, DecodeKey, Entry, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::error::Error;

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

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Stores `value` with the default TTL (jittered) in both tiers and tells other
    /// instances to drop their copies.
    pub async fn set(&self, key: K, value: V) -> Result<(), Error> {
        self.set_with(key, value, WriteOptions::new()).await
    }

    /// Stores `value` with this write's TTL and tags.
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilient_cache::{Cache, WriteOptions};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// let options = WriteOptions::new().ttl(Duration::from_secs(30)).tags(["user:7"]);
    /// users.set_with(7, "Ada".into(), options).await?;
    /// assert_eq!(users.get(&7).await?.as_deref(), Some("Ada"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    /// Removes `key` from both tiers and from other instances' L1. `true` when
    /// either tier held it.
    ///
    /// When Redis cannot be reached (down, paused, breaker open), this instance's
    /// L1 changes at once and the rest — the L2 delete and the message to other
    /// instances — waits in the recovery queue and is applied as soon as Redis
    /// answers again, before any later write; the answer then reflects L1 only.
    /// [`TieredStore::recovery_pending`](cache_tiered::TieredStore::recovery_pending) (on [`tiered`](Self::tiered)) and
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

    /// Removes every entry tagged `tag`, in both tiers and on other instances;
    /// returns how many this instance removed (L2's count when there is an L2).
    ///
    /// ```
    /// use resilient_cache::{Cache, LoadOptions, WriteOptions};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// users.set_with(1, "Ada".into(), WriteOptions::new().tags(["team:7"])).await?;
    /// users
    ///     .get_or_load_with(2, &LoadOptions::new().tags(["team:7"]), |_| async { Some("Bo".into()) })
    ///     .await?;
    /// assert_eq!(users.invalidate_tag("team:7").await?, 2);
    /// assert_eq!(users.get(&1).await?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, Error> {
        self.inner
            .tiered
            .invalidate_tag(tag)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Removes every key whose encoding starts with `prefix` (e.g. `"user:42:"` for
    /// all `("user", 42, _)` keys), in both tiers and on other instances.
    ///
    /// L2 is walked with `SCAN` (on every master of a cluster), so the cost grows
    /// with the number of keys in the namespace. To empty the whole cache use
    /// [`clear`](Self::clear), which is O(1).
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, Error> {
        self.inner
            .tiered
            .invalidate_prefix(prefix)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Empties the whole cache — this name's L1 on every instance and its L2
    /// entries — in one round trip, whatever its size.
    ///
    /// Nothing is scanned: the time now becomes the cache's *clear epoch*, kept
    /// in Redis beside the invalidation bus and published on it in the same
    /// script. Entries created before the epoch read as misses everywhere; other
    /// instances drop their older L1 copies when the message arrives (and read the
    /// epoch when they start or after losing bus history); the cleared bytes leave
    /// Redis with their TTL or the next write of their key. Entries loaded after
    /// the clear are untouched. During an outage the clear waits in the recovery
    /// queue (superseding everything queued before it) and is replayed with the
    /// time it was made.
    ///
    /// The epoch compares wall clocks of different machines: keep them in sync
    /// (an instance whose clock runs ahead by `d` keeps what it wrote in the `d`
    /// before the clear). An instance without the bus learns of a clear only
    /// when it starts.
    ///
    /// ```
    /// use resilient_cache::Cache;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// users.set(1, "Ada".into()).await?;
    /// users.clear().await?;
    /// assert_eq!(users.get(&1).await?, None);
    /// assert_eq!(users.entry_count(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn clear(&self) -> Result<(), Error> {
        self.inner.tiered.clear().await.map_err(|e| self.failed(e))
    }
}
