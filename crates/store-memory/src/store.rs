//! [`MemoryStore`]: the sharded, bounded L1.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_core::{CacheError, CacheKey, Clock, Entry, InvalidInput, SystemClock, Timestamp};

use crate::climb::Climb;
use crate::config::{EvictionListener, MemoryStoreBuilder, Plan, Weigher};
use crate::fence::{Fences, Fill, ShardFences};
use crate::shadow::{SAMPLE_BITS_AT, Shadow};
use crate::shard::{Extras, Hasher, Read, Removed, Shard, shard_index};
use crate::spare::{SPARE_DIVISOR, Spare};
use crate::stats::MemoryStats;
use crate::sync::{RwLock, RwLockWriteGuard};

/// One shard with its read counters, on cache lines of its own so two threads
/// working on neighbouring shards do not slow each other down. The counters
/// share a line with each other, not with the lock word: the shard's read
/// fields are 64-byte aligned (`Hot` in `shard/mod.rs`), which puts the lock
/// word on the line after them.
#[repr(C, align(128))]
pub(crate) struct ShardCell<K, V> {
    hits: AtomicU64,
    misses: AtomicU64,
    /// Hits on the keys the climber samples (see `climb.rs`); counted without
    /// a locked instruction, so racing readers may lose a count.
    sampled_hits: AtomicU64,
    pub(crate) lock: RwLock<Shard<K, V>>,
    /// Which of the shard's keys were invalidated when (see `fence.rs`); read
    /// and written under `lock`, after the shard's hot lines.
    pub(crate) fences: ShardFences,
}

impl<K, V> ShardCell<K, V> {
    fn reads(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// A bounded, sharded, in-process store with S3-FIFO queues, adaptive TinyLFU
/// admission, and TTL.
///
/// - Bounded by entry count and by total weight; both bounds hold at every moment.
///   Each shard owns an exact share of the weight bound and 3/4 of its share
///   of the entry bound; the rest of the entries is a common pool shards draw on
///   as they fill, so uneven hashing evicts nothing before the store is full.
/// - Keys are looked up by value (`K: Hash + Eq`): a hit builds no string and
///   allocates nothing beyond cloning the value (wrap large values in `Arc`).
/// - A hit takes only its shard's read lock: hits on the same shard run side by
///   side.
/// - Eviction: new keys wait in a small queue; those read while there join the
///   main one, and of the others only a key that was turned away before and
///   came back may take the place of main's coldest key, if a frequency sketch
///   says it is wanted more often (by a margin that adapts to how often each
///   kind of decision turns out wrong). The small queue's size follows the
///   store's hit rate (sampled, so hits stay write-free). A scan of one-time
///   keys therefore does not push out the working set, a loop bigger than the
///   cache still hits, and frequency-heavy workloads keep their popular keys
///   (measured on real traces by `cargo xtask bench`).
/// - Expired entries are misses, are removed when met, and are swept regularly, so
///   memory does not fill up with dead entries.
///
/// The synchronous methods (`get_sync`, `put_sync`, …) are the real work; the
/// [`Store`](cache_core::Store) implementation wraps them in ready futures.
pub struct MemoryStore<K, V> {
    shards: Box<[ShardCell<K, V>]>,
    /// Entry slots no shard holds yet (see `from_plan`).
    spare: Spare,
    mask: usize,
    hasher: Hasher,
    pub(crate) clock: Arc<dyn Clock>,
    /// `clock` is the system clock: hits read it without a dynamic call.
    system_clock: bool,
    /// Sizes every shard's *small* queue by the hit rate.
    climb: Climb,
    /// Chooses the admission rule, for stores large enough to sample.
    shadow: Option<Shadow>,
    /// A hit whose `(hash >> SAMPLE_BITS_AT) & rare_mask` is not zero is
    /// sampled by neither the climber nor the shadow and needs no counting:
    /// the two masks' common bits (zero when every read is counted), so one
    /// test on the hit path rules all three out.
    rare_mask: u64,
    weigher: Option<Weigher<K, V>>,
    max_entry_weight: u64,
    max_key_len: Option<usize>,
    max_ttl: Option<Duration>,
    max_entries: usize,
    max_weight: u64,
    count_reads: bool,
    listener: Option<EvictionListener<K, V>>,
    time_to_idle: Option<Duration>,
    name: Arc<str>,
    /// The invalidation sequence and bulk mark for fenced fills.
    pub(crate) fences: Fences,
}

impl<K, V> fmt::Debug for MemoryStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("name", &self.name)
            .field("shards", &self.shards.len())
            .field("max_entries", &self.max_entries)
            .field("max_weight", &self.max_weight)
            .finish_non_exhaustive()
    }
}

impl<K, V> MemoryStore<K, V> {
    /// A builder with the defaults (10,000 entries, no weight bound, system clock).
    pub fn builder() -> MemoryStoreBuilder<K, V> {
        MemoryStoreBuilder::default()
    }
}

impl<K, V> MemoryStore<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    pub(crate) fn from_plan(b: MemoryStoreBuilder<K, V>, plan: Plan) -> Self {
        let n = plan.shards;
        // Each shard owns a little less than its share of `max_entries`; the rest
        // is a common pool that shards draw on as they fill (and, when it is
        // empty, shards borrow owned slots others do not fill), so hash imbalance
        // does not evict anything before the store as a whole is full. The owned
        // quotas plus the pool add up to `max_entries` exactly.
        let share = b.max_entries / n;
        let owned = share - share / SPARE_DIVISOR;
        let spare = b.max_entries - owned * n;
        let extras = Extras {
            notify: b.listener.is_some(),
            idle_ms: b
                .time_to_idle
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        let hasher = crate::seed::hasher();
        let shards = (0..n)
            .map(|i| {
                // The weight bound is split exactly: the shares add up to the total.
                let weight =
                    plan.max_weight / n as u64 + u64::from((i as u64) < plan.max_weight % n as u64);
                ShardCell {
                    lock: RwLock::new(Shard::new(share, owned, weight, extras, hasher.clone())),
                    hits: AtomicU64::new(0),
                    misses: AtomicU64::new(0),
                    sampled_hits: AtomicU64::new(0),
                    fences: ShardFences::default(),
                }
            })
            .collect();
        let (climb, shadow) = (
            Climb::new(b.max_entries),
            Shadow::for_capacity(b.max_entries),
        );
        let rare_mask = if b.count_reads {
            0
        } else {
            climb.mask & shadow.as_ref().map_or(u64::MAX, |s| s.mask)
        };
        MemoryStore {
            shards,
            // Every shard starts empty: a lender if it owns more than the one slot it keeps.
            spare: Spare::new(spare, if owned > 1 { n } else { 0 }),
            mask: n - 1,
            hasher,
            system_clock: b.clock.is_system(),
            climb,
            shadow,
            rare_mask,
            clock: b.clock,
            weigher: b.weigher,
            max_entry_weight: plan.max_entry_weight,
            max_key_len: b.max_key_len,
            max_ttl: b.max_ttl,
            max_entries: b.max_entries,
            max_weight: plan.max_weight,
            count_reads: b.count_reads,
            listener: b.listener,
            time_to_idle: b.time_to_idle,
            name: b.name,
            fences: Fences::default(),
        }
    }

    /// The store's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of shards.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The entry-count bound.
    #[must_use]
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The weight bound (`u64::MAX` when unbounded).
    #[must_use]
    pub fn max_weight(&self) -> u64 {
        self.max_weight
    }

    /// The heaviest single entry accepted.
    #[must_use]
    pub fn max_entry_weight(&self) -> u64 {
        self.max_entry_weight
    }

    /// The cap on how long any entry is kept (see [`MemoryStoreBuilder::max_ttl`]).
    #[must_use]
    pub fn max_ttl(&self) -> Option<Duration> {
        self.max_ttl
    }

    /// The clock the store reads.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Entries held now (expired ones not yet reclaimed included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock.read().len()).sum()
    }

    /// True when no entries are held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight held now.
    #[must_use]
    pub fn weight(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |acc, s| acc.saturating_add(s.lock.read().weight()))
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> MemoryStats {
        let mut stats = MemoryStats::default();
        for cell in self.shards.iter() {
            let s = cell.lock.read();
            stats.add(cell.reads(), &s.counters, s.len(), s.weight());
        }
        stats
    }

    /// Removes everything.
    pub fn clear(&self) {
        self.fences.bulk();
        for s in self.shards.iter() {
            // Dropped here, after the shard's lock is released.
            drop(self.shrink(s, Shard::clear));
        }
    }

    /// Runs `f` on a shard under its write lock, then returns the entry slots
    /// the shard drew and no longer fills to the common pool; once the lock is
    /// released, tells the eviction listener what left.
    fn shrink<R>(&self, cell: &ShardCell<K, V>, f: impl FnOnce(&mut Shard<K, V>) -> R) -> R {
        let mut shard = cell.lock.write();
        let lent = shard.lends();
        let out = f(&mut shard);
        shard.release(&self.spare);
        self.spare.lender(lent, shard.lends());
        let removed = unlock(shard);
        self.notify(removed);
        out
    }

    /// Moves one owned but unfilled entry slot from another shard to the
    /// caller's (which holds its own shard's lock and found the pool empty).
    /// Only shards free at once are asked: waiting for a lock while holding
    /// one could deadlock, and a busy lender only means one eviction more.
    fn borrow(&self, hash: u64) -> bool {
        if !self.spare.has_lenders() {
            return false;
        }
        let n = self.shards.len();
        // Start at a shard picked by the key so borrowers spread over lenders.
        let start = (hash >> 32) as usize;
        for j in 0..n {
            // Our own shard's lock is held: `try_write` skips it.
            let Some(mut other) = self.shards[(start + j) % n].lock.try_write() else {
                continue;
            };
            if other.lend() {
                self.spare.lender(true, other.lends());
                return true;
            }
        }
        false
    }

    /// Hands what left a shard to the listener, outside every lock.
    fn notify(&self, removed: Option<Vec<Removed<K, V>>>) {
        if let (Some(listener), Some(removed)) = (&self.listener, removed) {
            for (key, value, cause) in removed {
                listener(key, value, cause);
            }
        }
    }

    /// The time to idle, if one is set.
    #[must_use]
    pub fn time_to_idle(&self) -> Option<Duration> {
        self.time_to_idle
    }

    /// The key's hash and its shard.
    pub(crate) fn locate(&self, key: &K) -> (u64, &ShardCell<K, V>) {
        let hash = self.hasher.hash_one(key);
        (hash, &self.shards[shard_index(hash, self.mask)])
    }

    fn weigh(&self, key: &K, entry: &Entry<V>) -> u64 {
        match entry.value() {
            None => 0,
            Some(v) => match &self.weigher {
                Some(f) => f(key, v),
                None => (size_of::<K>() + size_of::<V>()) as u64,
            },
        }
    }

    /// Looks `key` up: a live (fresh or stale) entry, or `None`. A hit counts as a
    /// use of the key for eviction. Allocates nothing but what cloning `V`
    /// allocates, and takes only the shard's read lock (an expired entry found is
    /// then removed under the write lock).
    ///
    /// Liveness is judged by the clock's [`recent`](Clock::recent) time, which for
    /// the system clock may lag by about a millisecond.
    #[inline]
    pub fn get_sync(&self, key: &K) -> Option<Entry<V>> {
        self.lookup(key, Shard::read)
    }

    /// The value of a *fresh* entry for `key`: `Some(Some(v))`, or `Some(None)`
    /// for a fresh absent marker (negative caching); `None` when the store
    /// holds nothing fresh (missing, or only in its stale window). Like
    /// [`get_sync`](Self::get_sync), a live entry found counts as a use of the
    /// key, but no [`Entry`] is built: the shard's read lock is held for the
    /// value's clone only, so this is the fastest read when only the value is
    /// wanted.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Clock, Entry, SystemClock};
    /// use cache_store_memory::MemoryStore;
    ///
    /// let store = MemoryStore::<&str, u32>::builder().max_entries(100).build()?;
    /// let now = SystemClock.now();
    /// store.put_sync("a", Entry::new(1, now, Duration::from_secs(60)))?;
    /// store.put_sync("gone", Entry::absent(now, Duration::from_secs(60)))?;
    /// assert_eq!(store.get_fresh_sync(&"a"), Some(Some(1)));
    /// assert_eq!(store.get_fresh_sync(&"gone"), Some(None));
    /// assert_eq!(store.get_fresh_sync(&"b"), None);
    /// # Ok::<(), cache_core::CacheError>(())
    /// ```
    #[inline(always)]
    pub fn get_fresh_sync(&self, key: &K) -> Option<Option<V>> {
        self.lookup(key, Shard::read_fresh)?
    }

    /// One read under the shard's shared lock, then the counting (and, for an
    /// expired entry, its removal under the write lock) after the lock is gone.
    #[inline(always)]
    fn lookup<T>(
        &self,
        key: &K,
        read: impl FnOnce(&Shard<K, V>, u64, &K, Timestamp) -> Read<T>,
    ) -> Option<T> {
        let (hash, cell) = self.locate(key);
        let now = self.recent();
        let shard = cell.lock.read();
        // Each arm returns on its own so the answer is built straight into the
        // return slot instead of being shuffled through temporaries.
        match read(&shard, hash, key, now) {
            Read::Hit(found) => {
                drop(shard);
                if (hash >> SAMPLE_BITS_AT) & self.rare_mask == 0 {
                    self.sampled_hit(cell, hash, now);
                }
                Some(found)
            }
            read => {
                drop(shard);
                self.missed(cell, hash, key, now, matches!(read, Read::Expired));
                None
            }
        }
    }

    /// A hit whose key the climber or the shadow may sample (one in 64 or
    /// fewer), or every hit when hits are counted: out of line, so the common
    /// hit carries none of it.
    #[cold]
    #[inline(never)]
    fn sampled_hit(&self, cell: &ShardCell<K, V>, hash: u64, now: Timestamp) {
        self.count_read(cell, true);
        if self.climb.sampled(hash) {
            // A plain load and store, not a read-modify-write: two threads
            // racing lose a count, which the climber's sampled rate
            // tolerates, and a hit stays free of a third locked instruction.
            let seen = cell.sampled_hits.load(Ordering::Relaxed);
            cell.sampled_hits.store(seen + 1, Ordering::Relaxed);
        }
        if let Some(s) = &self.shadow {
            s.offer(hash, now);
        }
    }

    /// A read that found nothing live: an expired entry found is removed
    /// under the write lock. Out of line, like [`sampled_hit`](Self::sampled_hit).
    #[inline(never)]
    fn missed(&self, cell: &ShardCell<K, V>, hash: u64, key: &K, now: Timestamp, expired: bool) {
        if expired {
            self.shrink(cell, |s| s.remove_if_expired(hash, key, now));
        }
        self.count_read(cell, false);
    }

    /// The clock's [`recent`](Clock::recent) time, without a dynamic call for
    /// the system clock.
    #[inline]
    pub(crate) fn recent(&self) -> Timestamp {
        if self.system_clock {
            SystemClock.recent()
        } else {
            self.clock.recent()
        }
    }

    fn count_read(&self, cell: &ShardCell<K, V>, hit: bool) {
        if self.count_reads {
            let counter = if hit { &cell.hits } else { &cell.misses };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Like [`get_sync`](Self::get_sync) without counting a use or a hit.
    pub fn peek_sync(&self, key: &K) -> Option<Entry<V>> {
        let (hash, cell) = self.locate(key);
        let now = self.recent();
        cell.lock.read().peek(hash, key, now)
    }

    /// Stores `entry` under `key` after checking the key length and the entry's
    /// weight; a refused put changes nothing. An entry already expired is not stored.
    pub fn put_sync(&self, key: K, entry: Entry<V>) -> Result<(), CacheError>
    where
        K: CacheKey,
    {
        let weight = self.check(&key, &entry)?;
        self.insert_at(key, entry, weight, self.recent(), Fill::Plain);
        Ok(())
    }

    /// Validates a put before anything changes: the key length (when limited)
    /// and the entry's weight. Returns the weight.
    #[inline]
    pub(crate) fn check(&self, key: &K, entry: &Entry<V>) -> Result<u64, CacheError>
    where
        K: CacheKey,
    {
        if let Some(max) = self.max_key_len {
            let len = key.to_key_string().len();
            if len > max {
                return Err(InvalidInput::KeyTooLong { len, max }.into());
            }
        }
        let size = self.weigh(key, entry);
        if size > self.max_entry_weight {
            let max = self.max_entry_weight;
            return Err(InvalidInput::ValueTooLarge { size, max }.into());
        }
        Ok(size)
    }

    /// Stores each entry that passes the checks of [`put_sync`](Self::put_sync) and
    /// skips the others, reading the clock once; returns how many passed (an
    /// entry already expired passes but, as with `put_sync`, is not kept).
    /// For filling the store from a batch read of another tier, where one
    /// entry too large for this store must not keep out the rest.
    pub fn put_each_sync(&self, entries: impl IntoIterator<Item = (K, Entry<V>)>) -> usize
    where
        K: CacheKey,
    {
        let now = self.clock.now();
        let mut stored = 0;
        for (key, entry) in entries {
            if let Ok(weight) = self.check(&key, &entry) {
                self.insert_at(key, entry, weight, now, Fill::Plain);
                stored += 1;
            }
        }
        stored
    }

    /// Stores an entry that passed [`check`](Self::check), as of `now`,
    /// unless `fill` is fenced (then `false`, nothing changed). Inlined into
    /// each put, so a plain put's `fill` is a constant (a separate function
    /// cost `--ab replace` ~15 instructions per put, measured by callgrind).
    #[inline(always)]
    pub(crate) fn insert_at(
        &self,
        key: K,
        mut entry: Entry<V>,
        weight: u64,
        now: Timestamp,
        fill: Fill,
    ) -> bool {
        if let Some(ttl) = self.max_ttl {
            entry = entry.capped_at(now.saturating_add(ttl));
        }
        let (hash, cell) = self.locate(&key);
        // Asked with the shard's write lock held: see `fence.rs`.
        let fenced = || match fill {
            Fill::Plain => false,
            Fill::Since(f) => cell.fences.refuses(&self.fences, hash, f),
            Fill::Fencing => {
                cell.fences.record(hash, self.fences.now());
                false
            }
        };
        if entry.is_expired(now) {
            // Storing it would only hide an older value; drop both.
            return self.shrink(cell, |shard| {
                let fenced = fenced();
                if !fenced {
                    shard.remove(hash, &key);
                }
                !fenced
            });
        }
        let mut shard = cell.lock.write();
        if fenced() {
            return false;
        }
        shard.set_small_permille(self.climb.permille());
        shard.free_admission = self.shadow.as_ref().is_some_and(Shadow::free_admission);
        let held = shard.len();
        let new_key = shard.put(hash, key, entry, (weight, now), &self.spare, || {
            self.borrow(hash)
        });
        // Whether the shard can lend changes only with what it holds (a put
        // leaves what it owns alone): a replacement, or a new key that
        // evicted one, has nothing to tell the pool.
        if shard.len() != held {
            self.spare.lender(shard.lends_holding(held), shard.lends());
        }
        let removed = unlock(shard);
        if let Some(s) = &self.shadow {
            s.offer(hash, now);
        }
        if new_key {
            // Outside the shard's lock: ending a period reads every shard's
            // sampled hits.
            let shards = &self.shards;
            self.climb.miss(hash, || {
                shards
                    .iter()
                    .map(|c| c.sampled_hits.load(Ordering::Relaxed))
                    .sum()
            });
        }
        self.notify(removed);
        true
    }

    /// Removes `key`; `true` if it was there.
    pub fn remove_sync(&self, key: &K) -> bool {
        let (hash, cell) = self.locate(key);
        self.shrink(cell, |s| {
            cell.fences.record(hash, self.fences.now());
            s.remove(hash, key)
        })
    }

    /// Removes every entry tagged `tag`; returns how many.
    pub fn invalidate_tag_sync(&self, tag: &str) -> u64 {
        self.remove_where(|_, e| e.tags().contains(tag))
    }

    /// Removes every entry whose encoded key starts with `prefix`; returns how many.
    pub fn invalidate_prefix_sync(&self, prefix: &str) -> u64
    where
        K: CacheKey,
    {
        let mut buf = String::new();
        self.remove_where(|k, _| {
            buf.clear();
            k.encode_key(&mut buf);
            buf.starts_with(prefix)
        })
    }

    /// Removes every entry for which `pred(key, entry)` is true; returns how many.
    pub fn remove_where(&self, mut pred: impl FnMut(&K, &Entry<V>) -> bool) -> u64 {
        self.fences.bulk();
        self.shards
            .iter()
            .map(|s| {
                let (n, taken) = self.shrink(s, |s| s.remove_where(&mut pred));
                // Dropped here, after the shard's lock is released.
                drop(taken);
                n
            })
            .sum()
    }

    /// Shortens what L1 may serve as fresh without asking anyone: every entry
    /// stops being fresh at most `within` from now, at a point spread by its key's
    /// hash over the second half of `within` (so the entries do not all go back
    /// to their source at once). Entries already due sooner are left alone; every
    /// entry stays servable as stale until its own stale end. `within` of zero
    /// makes every entry stale at once. Returns how many entries were shortened.
    ///
    /// This is what a tiered cache does when it learns it may have missed
    /// invalidations: it bounds how long a copy it can no longer vouch for is
    /// served, instead of dropping everything onto the source.
    pub fn cap_fresh(&self, within: Duration) -> u64 {
        let now = self.clock.now().as_millis();
        let window = within.as_millis() as u64;
        let half = window / 2;
        self.shards
            .iter()
            .map(|cell| {
                cell.lock.write().cap_fresh(|hash| {
                    let spread = if half == 0 { 0 } else { hash % (half + 1) };
                    Timestamp::from_millis(now + (window - half) + spread)
                })
            })
            .sum()
    }

    /// Removes every expired entry now (they are also reclaimed as the store is
    /// used); returns how many.
    pub fn purge_expired(&self) -> u64 {
        let now = self.clock.now();
        self.shards
            .iter()
            .map(|s| self.shrink(s, |s| s.purge_expired(now)))
            .sum()
    }

    /// Every key held (expired ones not yet reclaimed included), in no particular
    /// order.
    #[must_use]
    pub fn keys(&self) -> Vec<K> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            out.extend(s.lock.read().keys().cloned());
        }
        out
    }
}

/// Releases a shard's write lock, then drops what the write took out (keys
/// and values evicted, replaced or removed, with no listener to hear of them);
/// returns what the listener is to hear, for the caller to hand over.
#[inline]
fn unlock<K: Hash + Eq + Clone, V>(
    mut shard: RwLockWriteGuard<'_, Shard<K, V>>,
) -> Option<Vec<Removed<K, V>>> {
    let removed = shard.removed.as_mut().map(std::mem::take);
    let spilled = shard.take_spilled();
    drop(shard);
    drop(spilled);
    removed
}
