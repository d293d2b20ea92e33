//! One shard: an exact LRU with entry-count and weight bounds, under one mutex.

use std::hash::{BuildHasher, Hash};

use cache_core::{Entry, Timestamp};
use lru::LruCache;

use crate::stats::{Counters, EvictionReason};

pub(crate) type Hasher = foldhash::fast::RandomState;

pub(crate) struct Slot<V> {
    pub(crate) entry: Entry<V>,
    pub(crate) weight: u64,
}

pub(crate) struct Shard<K, V> {
    lru: LruCache<K, Slot<V>, Hasher>,
    weight: u64,
    max_entries: usize,
    max_weight: u64,
    /// Puts since the last full sweep for expired entries.
    puts_since_sweep: usize,
    pub(crate) counters: Counters,
}

/// Expired entries found at the cold end on each put, at most.
const TAIL_RECLAIM: usize = 2;
/// A full sweep runs after this many puts, or after as many puts as there are
/// entries, whichever is larger: amortized O(1) per put.
const MIN_SWEEP_INTERVAL: usize = 64;

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    pub(crate) fn new(max_entries: usize, max_weight: u64, hasher: Hasher) -> Self {
        Shard {
            lru: LruCache::unbounded_with_hasher(hasher),
            weight: 0,
            max_entries,
            max_weight,
            puts_since_sweep: 0,
            counters: Counters::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lru.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// Looks up and promotes; an expired entry is removed and is a miss.
    pub(crate) fn get(&mut self, key: &K, now: Timestamp) -> Option<&Entry<V>> {
        let expired = match self.lru.get(key) {
            None => {
                self.counters.misses += 1;
                return None;
            }
            Some(slot) => slot.entry.is_expired(now),
        };
        if expired {
            self.remove_with(key, EvictionReason::Expired);
            self.counters.misses += 1;
            return None;
        }
        self.counters.hits += 1;
        self.lru.peek(key).map(|slot| &slot.entry)
    }

    /// Looks up without promoting or counting.
    pub(crate) fn peek(&self, key: &K, now: Timestamp) -> Option<&Entry<V>> {
        self.lru
            .peek(key)
            .map(|slot| &slot.entry)
            .filter(|e| !e.is_expired(now))
    }

    /// Inserts or replaces, then restores the bounds by evicting from the cold end.
    /// The caller has checked `weight` against the per-entry limit.
    pub(crate) fn put(&mut self, key: K, entry: Entry<V>, weight: u64, now: Timestamp) {
        match self.lru.push(key, Slot { entry, weight }) {
            Some((old_key, old)) => {
                // `push` hands back either the replaced value (same key) or the
                // evicted LRU entry; the map is unbounded, so only the former.
                self.weight = self.weight.saturating_sub(old.weight);
                drop(old_key);
                self.counters.updates += 1;
            }
            None => self.counters.inserts += 1,
        }
        self.weight = self.weight.saturating_add(weight);
        self.reclaim_tail(now);
        while self.lru.len() > self.max_entries {
            self.evict_lru(EvictionReason::Capacity, now);
        }
        while self.weight > self.max_weight {
            self.evict_lru(EvictionReason::Weight, now);
        }
        self.puts_since_sweep += 1;
        if self.puts_since_sweep >= self.lru.len().max(MIN_SWEEP_INTERVAL) {
            self.purge_expired(now);
        }
    }

    pub(crate) fn remove(&mut self, key: &K) -> bool {
        self.remove_with(key, EvictionReason::Removed)
    }

    fn remove_with(&mut self, key: &K, reason: EvictionReason) -> bool {
        match self.lru.pop(key) {
            Some(slot) => {
                self.weight = self.weight.saturating_sub(slot.weight);
                self.counters.count(reason);
                true
            }
            None => false,
        }
    }

    /// Evicts the least recently used entry; if it had already expired, it is
    /// counted as expired rather than as a capacity or weight eviction.
    fn evict_lru(&mut self, reason: EvictionReason, now: Timestamp) {
        if let Some((_, slot)) = self.lru.pop_lru() {
            self.weight = self.weight.saturating_sub(slot.weight);
            let reason = if slot.entry.is_expired(now) {
                EvictionReason::Expired
            } else {
                reason
            };
            self.counters.count(reason);
        }
    }

    fn reclaim_tail(&mut self, now: Timestamp) {
        for _ in 0..TAIL_RECLAIM {
            match self.lru.peek_lru() {
                Some((_, slot)) if slot.entry.is_expired(now) => {
                    self.evict_lru(EvictionReason::Expired, now);
                }
                _ => break,
            }
        }
    }

    /// Removes every expired entry; returns how many.
    pub(crate) fn purge_expired(&mut self, now: Timestamp) -> u64 {
        self.puts_since_sweep = 0;
        let expired: Vec<K> = self
            .lru
            .iter()
            .filter(|(_, slot)| slot.entry.is_expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            self.remove_with(key, EvictionReason::Expired);
        }
        expired.len() as u64
    }

    /// Removes every entry matching `pred`; returns how many.
    pub(crate) fn remove_where(&mut self, mut pred: impl FnMut(&K, &Entry<V>) -> bool) -> u64 {
        let doomed: Vec<K> = self
            .lru
            .iter()
            .filter(|(k, slot)| pred(k, &slot.entry))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &doomed {
            self.remove_with(key, EvictionReason::Removed);
        }
        doomed.len() as u64
    }

    pub(crate) fn clear(&mut self) {
        let n = self.lru.len() as u64;
        self.lru.clear();
        self.weight = 0;
        self.counters.removed += n;
    }

    /// Keys from most to least recently used (for tests and debugging).
    pub(crate) fn keys_mru(&self) -> impl Iterator<Item = &K> {
        self.lru.iter().map(|(k, _)| k)
    }
}

/// Picks a shard from a hash: the high bits, since the maps use the low ones.
pub(crate) fn shard_index<K: Hash + ?Sized>(hasher: &Hasher, key: &K, mask: usize) -> usize {
    let h = hasher.hash_one(key);
    ((h >> 32) as usize) & mask
}
