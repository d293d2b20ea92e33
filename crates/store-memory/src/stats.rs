//! Counters of the in-memory store.

/// Why an entry left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictionReason {
    /// The entry-count bound was reached; the least recently used entry went.
    Capacity,
    /// The weight bound was reached; the least recently used entry went.
    Weight,
    /// The entry's physical expiry passed.
    Expired,
    /// Removed on request (remove, tag or prefix invalidation, clear).
    Removed,
}

impl EvictionReason {
    /// `"capacity"`, `"weight"`, `"expired"` or `"removed"` (a metric label).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            EvictionReason::Capacity => "capacity",
            EvictionReason::Weight => "weight",
            EvictionReason::Expired => "expired",
            EvictionReason::Removed => "removed",
        }
    }
}

/// Why an entry left the store, as an eviction listener hears it (the words of
/// moka and Caffeine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// A bound (entry count or weight) was reached.
    Size,
    /// Its time to live or time to idle ran out.
    Expired,
    /// Removed on request: `remove`, a tag, a prefix, a predicate, `clear`, or an
    /// invalidation from another instance.
    Explicit,
    /// A new entry was stored under its key.
    Replaced,
}

impl RemovalCause {
    /// `"size"`, `"expired"`, `"explicit"` or `"replaced"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RemovalCause::Size => "size",
            RemovalCause::Expired => "expired",
            RemovalCause::Explicit => "explicit",
            RemovalCause::Replaced => "replaced",
        }
    }
}

impl From<EvictionReason> for RemovalCause {
    fn from(reason: EvictionReason) -> Self {
        match reason {
            EvictionReason::Capacity | EvictionReason::Weight => RemovalCause::Size,
            EvictionReason::Expired => RemovalCause::Expired,
            EvictionReason::Removed => RemovalCause::Explicit,
        }
    }
}

/// Per-shard counters of writes, updated under the shard's write lock (reads are
/// counted beside the lock, in atomics).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) inserts: u64,
    pub(crate) updates: u64,
    pub(crate) evicted_capacity: u64,
    pub(crate) evicted_weight: u64,
    pub(crate) expired: u64,
    pub(crate) removed: u64,
}

impl Counters {
    pub(crate) fn count(&mut self, reason: EvictionReason) {
        match reason {
            EvictionReason::Capacity => self.evicted_capacity += 1,
            EvictionReason::Weight => self.evicted_weight += 1,
            EvictionReason::Expired => self.expired += 1,
            EvictionReason::Removed => self.removed += 1,
        }
    }
}

/// A snapshot of the store's counters and size.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Look-ups that found a live entry (counted only with
    /// [`count_reads`](crate::MemoryStoreBuilder::count_reads)).
    pub hits: u64,
    /// Look-ups that found nothing or only an expired entry (counted only with
    /// [`count_reads`](crate::MemoryStoreBuilder::count_reads)).
    pub misses: u64,
    /// Puts of a new key.
    pub inserts: u64,
    /// Puts that replaced an entry.
    pub updates: u64,
    /// Entries evicted by the entry-count bound.
    pub evicted_capacity: u64,
    /// Entries evicted by the weight bound.
    pub evicted_weight: u64,
    /// Entries dropped because they had expired.
    pub expired: u64,
    /// Entries removed on request.
    pub removed: u64,
    /// Entries held now.
    pub entries: u64,
    /// Total weight held now.
    pub weight: u64,
}

impl MemoryStats {
    /// Evictions for one reason.
    #[must_use]
    pub fn evictions(&self, reason: EvictionReason) -> u64 {
        match reason {
            EvictionReason::Capacity => self.evicted_capacity,
            EvictionReason::Weight => self.evicted_weight,
            EvictionReason::Expired => self.expired,
            EvictionReason::Removed => self.removed,
        }
    }

    /// `hits / (hits + misses)`, or 0 before any counted look-up.
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    pub(crate) fn add(&mut self, reads: (u64, u64), c: &Counters, entries: usize, weight: u64) {
        self.hits += reads.0;
        self.misses += reads.1;
        self.inserts += c.inserts;
        self.updates += c.updates;
        self.evicted_capacity += c.evicted_capacity;
        self.evicted_weight += c.evicted_weight;
        self.expired += c.expired;
        self.removed += c.removed;
        self.entries += entries as u64;
        self.weight = self.weight.saturating_add(weight);
    }
}
