//! [`MemoryStoreBuilder`]: every setting of the in-memory store, validated in `build()`.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{CacheError, Clock, ConfigError, SystemClock};

use crate::stats::RemovalCause;
use crate::store::MemoryStore;

/// Computes the weight (for example the size in bytes) of a key and its value.
pub type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;

/// Hears every entry that leaves the store: its key, its value (`None` for an
/// *absent* marker) and why. Called after the store's lock is released, on the
/// thread that made the change, so it may use the store; keep it short (it runs
/// inside a put, a read that found an expired entry, a removal).
pub type EvictionListener<K, V> = Arc<dyn Fn(K, Option<V>, RemovalCause) + Send + Sync>;

/// The most shards a store uses by default.
const MAX_DEFAULT_SHARDS: usize = 64;
/// A shard should hold at least this many entries, or LRU order gets too coarse.
const MIN_ENTRIES_PER_SHARD: usize = 32;

/// Builds a [`MemoryStore`]. Every setting is checked by [`build`](Self::build).
///
/// ```
/// use cache_store_memory::MemoryStore;
///
/// let store = MemoryStore::<String, Vec<u8>>::builder()
///     .max_entries(10_000)
///     .max_weight(8 * 1024 * 1024)
///     .weigher(|k: &String, v: &Vec<u8>| (k.len() + v.len()) as u64)
///     .build()?;
/// assert_eq!(store.len(), 0);
///
/// // Contradictions fail at build time, not later.
/// let err = MemoryStore::<String, Vec<u8>>::builder().max_entries(0).build();
/// assert!(err.is_err());
/// # Ok::<(), cache_core::CacheError>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct MemoryStoreBuilder<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) max_entries: usize,
    pub(crate) max_weight: Option<u64>,
    pub(crate) max_entry_weight: Option<u64>,
    pub(crate) weigher: Option<Weigher<K, V>>,
    pub(crate) max_key_len: Option<usize>,
    pub(crate) max_ttl: Option<Duration>,
    pub(crate) shards: Option<usize>,
    pub(crate) count_reads: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) listener: Option<EvictionListener<K, V>>,
    pub(crate) time_to_idle: Option<Duration>,
}

impl<K, V> fmt::Debug for MemoryStoreBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStoreBuilder")
            .field("name", &self.name)
            .field("max_entries", &self.max_entries)
            .field("max_weight", &self.max_weight)
            .field("max_entry_weight", &self.max_entry_weight)
            .field("custom_weigher", &self.weigher.is_some())
            .field("max_key_len", &self.max_key_len)
            .field("max_ttl", &self.max_ttl)
            .field("shards", &self.shards)
            .field("count_reads", &self.count_reads)
            .field("clock", &self.clock)
            .field("eviction_listener", &self.listener.is_some())
            .field("time_to_idle", &self.time_to_idle)
            .finish()
    }
}

impl<K, V> Default for MemoryStoreBuilder<K, V> {
    fn default() -> Self {
        MemoryStoreBuilder {
            name: Arc::from("l1"),
            max_entries: 10_000,
            max_weight: None,
            max_entry_weight: None,
            weigher: None,
            max_key_len: None,
            max_ttl: None,
            shards: None,
            count_reads: false,
            clock: Arc::new(SystemClock),
            listener: None,
            time_to_idle: None,
        }
    }
}

impl<K, V> MemoryStoreBuilder<K, V> {
    /// A name for reports (default `"l1"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// The most entries the store holds (default 10,000). Must be at least 1.
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// The most total weight the store holds (default: unbounded by weight).
    /// Must be at least 1.
    pub fn max_weight(mut self, w: u64) -> Self {
        self.max_weight = Some(w);
        self
    }

    /// The heaviest single entry accepted; heavier puts are refused with
    /// `InvalidInput::ValueTooLarge` and nothing is evicted for them. Defaults to
    /// the weight budget of one shard. Must not exceed `max_weight`.
    pub fn max_entry_weight(mut self, w: u64) -> Self {
        self.max_entry_weight = Some(w);
        self
    }

    /// How entries are weighed (default: the shallow size of key and value,
    /// `size_of::<K>() + size_of::<V>()`). Absent markers weigh nothing.
    pub fn weigher(mut self, f: impl Fn(&K, &V) -> u64 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(f));
        self
    }

    /// Refuses keys whose encoded form is longer than `n` bytes (default: no limit).
    pub fn max_key_len(mut self, n: usize) -> Self {
        self.max_key_len = Some(n);
        self
    }

    /// Caps how long any entry is kept, whatever its own expiry (default: no cap).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = Some(ttl);
        self
    }

    /// Number of shards, a power of two no larger than `max_entries`
    /// (default: about four per CPU, fewer for small stores). One shard gives an
    /// exact LRU; more shards let threads work without waiting on each other.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Counts hits and misses in [`MemoryStats`](crate::MemoryStats) (default: off).
    ///
    /// Off by default because the count is one more atomic increment on every hit,
    /// about a tenth of a hit's cost, and a cache in front of the store (the
    /// tiered cache, the facade) counts its requests itself. Turn it on when the
    /// store is used alone and its hit ratio matters. Writes and evictions are
    /// always counted.
    pub fn count_reads(mut self, on: bool) -> Self {
        self.count_reads = on;
        self
    }

    /// The clock used for expiry (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The clock used for expiry, already shared.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `listener` with every entry that leaves the store and why
    /// ([`RemovalCause`]): evicted by a bound, expired (TTL or time to idle),
    /// removed on request, or replaced by a newer entry. See
    /// [`EvictionListener`] for when it runs.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use cache_core::{Clock, Entry, SystemClock};
    /// use cache_store_memory::{MemoryStore, RemovalCause};
    ///
    /// let heard = Arc::new(Mutex::new(Vec::new()));
    /// let log = heard.clone();
    /// let store = MemoryStore::<u64, String>::builder()
    ///     .eviction_listener(move |k, _v, cause| log.lock().unwrap().push((k, cause)))
    ///     .build()?;
    /// let entry = |v: &str| Entry::new(v.to_owned(), SystemClock.now(), Duration::from_secs(60));
    /// store.put_sync(1, entry("a"))?;
    /// store.put_sync(1, entry("b"))?;
    /// store.remove_sync(&1);
    /// assert_eq!(*heard.lock().unwrap(), [(1, RemovalCause::Replaced), (1, RemovalCause::Explicit)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(K, Option<V>, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// [`eviction_listener`](Self::eviction_listener) with a listener already shared.
    pub fn shared_eviction_listener(mut self, listener: EvictionListener<K, V>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Removes an entry once it has not been read for `idle` (on top of its own
    /// TTL: whichever ends first). A read resets the wait; a put starts it.
    /// At least 1 ms.
    pub fn time_to_idle(mut self, idle: Duration) -> Self {
        self.time_to_idle = Some(idle);
        self
    }

    /// Validates the settings and builds the store.
    pub fn build(self) -> Result<MemoryStore<K, V>, CacheError>
    where
        K: Hash + Eq + Clone,
        V: Clone,
    {
        let plan = self.plan()?;
        Ok(MemoryStore::from_plan(self, plan))
    }

    fn plan(&self) -> Result<Plan, ConfigError> {
        if self.max_entries == 0 {
            return Err(ConfigError::new("max_entries", "must be at least 1"));
        }
        if self.max_weight == Some(0) {
            return Err(ConfigError::new("max_weight", "must be at least 1"));
        }
        if self.max_entry_weight == Some(0) {
            return Err(ConfigError::new("max_entry_weight", "must be at least 1"));
        }
        if self.max_key_len == Some(0) {
            return Err(ConfigError::new("max_key_len", "must be at least 1"));
        }
        if self.max_ttl == Some(Duration::ZERO) {
            return Err(ConfigError::new("max_ttl", "must be longer than zero"));
        }
        if self
            .time_to_idle
            .is_some_and(|idle| idle < Duration::from_millis(1))
        {
            return Err(ConfigError::new("time_to_idle", "must be at least 1 ms"));
        }
        let max_weight = self.max_weight.unwrap_or(u64::MAX);
        if let Some(entry) = self.max_entry_weight
            && entry > max_weight
        {
            return Err(ConfigError::new(
                "max_entry_weight",
                format!("({entry}) must not exceed max_weight ({max_weight})"),
            ));
        }
        let shards = match self.shards {
            Some(n) => {
                if n == 0 || !n.is_power_of_two() {
                    return Err(ConfigError::new(
                        "shards",
                        format!("must be a power of two (got {n})"),
                    ));
                }
                if n > self.max_entries {
                    return Err(ConfigError::new(
                        "shards",
                        format!("({n}) must not exceed max_entries ({})", self.max_entries),
                    ));
                }
                n
            }
            None => self.default_shards(max_weight),
        };
        let shard_weight = max_weight / shards as u64;
        if shard_weight == 0 {
            return Err(ConfigError::new(
                "max_weight",
                format!("({max_weight}) must be at least the number of shards ({shards})"),
            ));
        }
        let max_entry_weight = self.max_entry_weight.unwrap_or(shard_weight);
        if max_entry_weight > shard_weight {
            return Err(ConfigError::new(
                "max_entry_weight",
                format!(
                    "({max_entry_weight}) must fit in one shard's weight budget \
                     ({shard_weight} = max_weight / {shards} shards); use fewer shards"
                ),
            ));
        }
        Ok(Plan {
            shards,
            max_weight,
            max_entry_weight,
        })
    }

    fn default_shards(&self, max_weight: u64) -> usize {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        let mut n = (cpus * 4).next_power_of_two().min(MAX_DEFAULT_SHARDS);
        while n > 1 && self.max_entries / n < MIN_ENTRIES_PER_SHARD {
            n /= 2;
        }
        // Keep room for the heaviest allowed entry in every shard.
        if let Some(entry) = self.max_entry_weight {
            while n > 1 && max_weight / (n as u64) < entry {
                n /= 2;
            }
        }
        n
    }
}

/// What `build()` derived from the settings.
pub(crate) struct Plan {
    pub(crate) shards: usize,
    pub(crate) max_weight: u64,
    pub(crate) max_entry_weight: u64,
}
