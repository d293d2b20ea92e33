//! The contenders behind one small interface: this project's L1 (alone and through
//! the facade) and the anchors.

use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::time::Duration;

use cache_core::{Clock, Entry, SystemClock};
use cache_store_memory::MemoryStore;
use futures_util::FutureExt;
use parking_lot::Mutex;
use resilient_cache::Cache;

/// Long enough that nothing expires during a run.
const TTL: Duration = Duration::from_secs(3600);

/// One cache under test, keyed by `u64`, holding `V`.
pub(crate) trait Contender<V>: Send + Sync {
    /// Whether `key` was present.
    fn get(&self, key: u64) -> bool;
    fn insert(&self, key: u64, value: V);
    /// Lets caches with deferred bookkeeping (moka) catch up.
    fn settle(&self) {}
    fn len(&self) -> usize;
    /// The size as it stands, without letting deferred bookkeeping catch up.
    fn len_now(&self) -> usize {
        self.len()
    }
}

/// Which cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    StoreMemory,
    Facade,
    MokaSync,
    MokaFuture,
    QuickCache,
    ShardedLru,
}

impl Kind {
    pub(crate) const ALL: [Kind; 6] = [
        Kind::StoreMemory,
        Kind::Facade,
        Kind::MokaSync,
        Kind::MokaFuture,
        Kind::QuickCache,
        Kind::ShardedLru,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::StoreMemory => "store-memory",
            Kind::Facade => "facade L1",
            Kind::MokaSync => "moka::sync",
            Kind::MokaFuture => "moka::future",
            Kind::QuickCache => "quick_cache",
            Kind::ShardedLru => "Mutex<LruCache>×64",
        }
    }

    pub(crate) fn is_ours(self) -> bool {
        matches!(self, Kind::StoreMemory | Kind::Facade)
    }

    pub(crate) fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.slug() == s)
    }

    pub(crate) fn slug(self) -> &'static str {
        match self {
            Kind::StoreMemory => "store-memory",
            Kind::Facade => "facade",
            Kind::MokaSync => "moka-sync",
            Kind::MokaFuture => "moka-future",
            Kind::QuickCache => "quick-cache",
            Kind::ShardedLru => "sharded-lru",
        }
    }
}

/// A cache of `kind` bounded to `capacity` entries.
pub(crate) fn make<V>(kind: Kind, capacity: usize) -> Box<dyn Contender<V>>
where
    V: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    match kind {
        Kind::StoreMemory => Box::new(Ours {
            store: MemoryStore::builder()
                .max_entries(capacity)
                .build()
                .expect("valid bench config"),
            clock: SystemClock,
        }),
        Kind::Facade => Box::new(Facade(
            Cache::builder("bench")
                .max_entries(capacity)
                .build()
                .expect("valid bench config"),
        )),
        Kind::MokaSync => Box::new(MokaSync(moka::sync::Cache::new(capacity as u64))),
        Kind::MokaFuture => Box::new(MokaFuture(moka::future::Cache::new(capacity as u64))),
        Kind::QuickCache => Box::new(Quick(quick_cache::sync::Cache::new(capacity))),
        Kind::ShardedLru => Box::new(ShardedLru::new(capacity)),
    }
}

struct Ours<V> {
    store: MemoryStore<u64, V>,
    clock: SystemClock,
}

impl<V: Clone + Send + Sync + 'static> Contender<V> for Ours<V> {
    fn get(&self, key: u64) -> bool {
        // The value read, as quick_cache's and moka's `get` are (`get_sync`
        // returns the whole entry, times and tags; `cache-bench --ab entry`
        // measures it).
        self.store.get_fresh_sync(&key).is_some()
    }
    fn insert(&self, key: u64, value: V) {
        let _ = self
            .store
            .put_sync(key, Entry::new(value, self.clock.recent(), TTL));
    }
    fn len(&self) -> usize {
        self.store.len()
    }
}

struct Facade<V>(Cache<u64, V>);

impl<V> Contender<V> for Facade<V>
where
    V: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn get(&self, key: u64) -> bool {
        // A memory-only cache answers without awaiting anything.
        matches!(self.0.get(&key).now_or_never(), Some(Ok(Some(_))))
    }
    fn insert(&self, key: u64, value: V) {
        let _ = self.0.set(key, value).now_or_never();
    }
    fn len(&self) -> usize {
        self.0.tiered().l1().len()
    }
}

struct MokaSync<V>(moka::sync::Cache<u64, V>);

impl<V: Clone + Send + Sync + 'static> Contender<V> for MokaSync<V> {
    fn get(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn insert(&self, key: u64, value: V) {
        self.0.insert(key, value);
    }
    fn settle(&self) {
        self.0.run_pending_tasks();
    }
    fn len(&self) -> usize {
        self.0.run_pending_tasks();
        self.0.entry_count() as usize
    }
    /// What the cache holds and answers `get` from: its map's entries, counted
    /// one by one. Not `entry_count()`, which moka updates only when it applies
    /// its pending writes, so it never shows the up to ~64 inserted entries
    /// that are already served but not yet admitted or evicted: a cache of 70
    /// entries holds 134 for most of a replay while `entry_count()` says 70.
    /// O(entries): sample it, do not call it per request.
    fn len_now(&self) -> usize {
        self.0.iter().count()
    }
}

struct MokaFuture<V>(moka::future::Cache<u64, V>);

impl<V: Clone + Send + Sync + 'static> Contender<V> for MokaFuture<V> {
    fn get(&self, key: u64) -> bool {
        matches!(self.0.get(&key).now_or_never(), Some(Some(_)))
    }
    fn insert(&self, key: u64, value: V) {
        // Completes without awaiting unless the write buffer is being drained by
        // another thread; then it is blocked on briefly.
        block_on(self.0.insert(key, value));
    }
    fn settle(&self) {
        block_on(self.0.run_pending_tasks());
    }
    fn len(&self) -> usize {
        self.settle();
        self.0.entry_count() as usize
    }
}

struct Quick<V>(quick_cache::sync::Cache<u64, V>);

impl<V: Clone + Send + Sync + 'static> Contender<V> for Quick<V> {
    fn get(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn insert(&self, key: u64, value: V) {
        self.0.insert(key, value);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// What a careful user writes in an afternoon: 64 mutex-guarded LRU shards.
struct ShardedLru<V> {
    shards: Vec<Mutex<lru::LruCache<u64, V, foldhash::fast::RandomState>>>,
    hasher: foldhash::fast::RandomState,
}

const LRU_SHARDS: usize = 64;

impl<V> ShardedLru<V> {
    fn new(capacity: usize) -> Self {
        let per =
            NonZeroUsize::new(capacity.div_ceil(LRU_SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        ShardedLru {
            shards: (0..LRU_SHARDS)
                .map(|_| {
                    Mutex::new(lru::LruCache::with_hasher(
                        per,
                        foldhash::fast::RandomState::default(),
                    ))
                })
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, key: &u64) -> &Mutex<lru::LruCache<u64, V, foldhash::fast::RandomState>> {
        let h = self.hasher.hash_one(key);
        &self.shards[(h as usize) % LRU_SHARDS]
    }
}

impl<V: Clone + Send + Sync + 'static> Contender<V> for ShardedLru<V> {
    fn get(&self, key: u64) -> bool {
        self.shard(&key).lock().get(&key).cloned().is_some()
    }
    fn insert(&self, key: u64, value: V) {
        self.shard(&key).lock().put(key, value);
    }
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

/// Polls `f` to completion on this thread (moka's async calls rarely wait, and
/// then only for another thread's maintenance).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}
