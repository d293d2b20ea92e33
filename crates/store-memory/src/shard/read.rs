//! Reads under the shard's shared lock: finding a live entry, counting the
//! read for eviction, and handing back the value or the whole entry.

use std::hash::Hash;
use std::sync::atomic::Ordering;

use cache_core::{Entry, Timestamp};

use super::{MAX_FREQ, Shard, Slot, idle_offset};

/// What a read under the shared lock found.
pub(crate) enum Read<T> {
    /// Found live: what the reader took from it.
    Hit(T),
    /// Present but expired: the caller removes it under the write lock.
    Expired,
    Miss,
}

/// Counts a read of `slot` for eviction. A lost update between two readers
/// only loses one count; a key already at the top costs no write at all.
#[inline]
fn count_read<K, V>(slot: &Slot<K, V>) {
    let seen = slot.freq.load(Ordering::Relaxed);
    if seen < MAX_FREQ {
        slot.freq.store(seen + 1, Ordering::Relaxed);
    }
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// The entry in `slot` (slot `i`), with its value cloned.
    #[inline]
    fn entry(&self, i: usize, slot: &Slot<K, V>, fresh: Timestamp, stale: Timestamp) -> Entry<V>
    where
        V: Clone,
    {
        Entry::from_parts(
            slot.value.clone(),
            self.slot_created_at(i, slot),
            fresh,
            Some(stale),
            self.slot_tags(i, slot),
        )
    }

    /// Looks up under the shared lock; a hit counts as a read of the key.
    #[inline]
    pub(crate) fn read(&self, hash: u64, key: &K, now: Timestamp) -> Read<Entry<V>>
    where
        V: Clone,
    {
        self.read_with(hash, key, now, |i, slot, fresh, stale| {
            self.entry(i, slot, fresh, stale)
        })
    }

    /// Like [`read`](Self::read), but hands back only the value, and only
    /// while the entry is fresh (`Some(None)` for a fresh absent marker); a
    /// stale entry still counts as a read. Builds no entry, so the lock is
    /// held for a value clone and nothing else.
    #[inline(always)]
    pub(crate) fn read_fresh(&self, hash: u64, key: &K, now: Timestamp) -> Read<Option<Option<V>>>
    where
        V: Clone,
    {
        let Some((i, slot)) = self.find_slot(hash, key) else {
            return Read::Miss;
        };
        // The common hit: fresh (so not stale either) with no time to idle
        // to check or refresh; the slot's whole fresh end is all it reads.
        if now < slot.fresh_until && self.hot.idle_ms.is_none() {
            count_read(slot);
            return Read::Hit(Some(slot.value.clone()));
        }
        self.read_slot_apart(i, slot, now)
    }

    /// The rest of [`read_fresh`](Self::read_fresh), for an entry that is
    /// stale or has a time to idle: out of line, so the common hit stays
    /// small enough to inline into the caller (a call here and the `Read` it
    /// returned through memory were a tenth of a hit).
    #[inline(never)]
    fn read_slot_apart(
        &self,
        i: usize,
        slot: &Slot<K, V>,
        now: Timestamp,
    ) -> Read<Option<Option<V>>>
    where
        V: Clone,
    {
        self.read_slot(i, slot, now, |_, slot, fresh, _| {
            (now < fresh).then(|| slot.value.clone())
        })
    }

    /// Finds a live entry, counts the read, and answers what `take` makes of
    /// it (given the slot and its fresh and stale times).
    #[inline]
    fn read_with<T>(
        &self,
        hash: u64,
        key: &K,
        now: Timestamp,
        take: impl FnOnce(usize, &Slot<K, V>, Timestamp, Timestamp) -> T,
    ) -> Read<T> {
        let Some((i, slot)) = self.find_slot(hash, key) else {
            return Read::Miss;
        };
        self.read_slot(i, slot, now, take)
    }

    /// [`read_with`](Self::read_with) once the slot is found.
    #[inline]
    fn read_slot<T>(
        &self,
        i: usize,
        slot: &Slot<K, V>,
        now: Timestamp,
        take: impl FnOnce(usize, &Slot<K, V>, Timestamp, Timestamp) -> T,
    ) -> Read<T> {
        let (fresh, stale) = self.slot_times(i, slot);
        if now >= stale {
            return Read::Expired;
        }
        if self.hot.idle_ms.is_some() {
            if self.idle(i, stale, now) {
                return Read::Expired;
            }
            self.untouched[i].fetch_min(idle_offset(stale, now), Ordering::Relaxed);
        }
        count_read(slot);
        Read::Hit(take(i, slot, fresh, stale))
    }

    /// Looks up without counting a read.
    pub(crate) fn peek(&self, hash: u64, key: &K, now: Timestamp) -> Option<Entry<V>>
    where
        V: Clone,
    {
        let (i, slot) = self.find_slot(hash, key)?;
        let (fresh, stale) = self.slot_times(i, slot);
        (now < stale && !self.idle(i, stale, now)).then(|| self.entry(i, slot, fresh, stale))
    }
}
