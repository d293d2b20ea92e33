//! Operations over every entry of a shard: expiry sweeps, removal by predicate
//! (tags, prefixes) and shortening freshness after a bus gap.

use std::hash::Hash;
use std::time::Duration;

use cache_core::{Entry, Timestamp};

use super::{Shard, Taken};
use crate::stats::EvictionReason;

/// Lends a slot's value to an [`Entry`] for a predicate, and puts it back even
/// if the predicate panics.
struct Lent<'a, V> {
    home: &'a mut Option<V>,
    entry: Entry<V>,
}

impl<V> Drop for Lent<'_, V> {
    fn drop(&mut self) {
        let entry = std::mem::replace(
            &mut self.entry,
            Entry::absent(Timestamp::ZERO, Duration::ZERO),
        );
        *self.home = entry.into_value();
    }
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// Removes every expired entry; returns how many.
    pub(crate) fn purge_expired(&mut self, now: Timestamp) -> u64 {
        self.puts_since_sweep = 0;
        let mut n = 0;
        let mut first_death = Timestamp::MAX;
        // Backwards: `detach` moves the last slot into the hole, and that slot
        // has been looked at already.
        for i in (0..self.hot.slots.len()).rev() {
            if self.dead(i, now) {
                self.discard(i, EvictionReason::Expired);
                n += 1;
            } else {
                first_death = first_death.min(self.death(i));
            }
        }
        self.first_death = first_death;
        self.swept_len = self.len();
        n
    }

    /// Removes every entry matching `pred`; returns how many, and (without a
    /// listener, and only for types with destructors) the keys and values
    /// taken out, for the store to drop once the lock is released.
    pub(crate) fn remove_where(
        &mut self,
        mut pred: impl FnMut(&K, &Entry<V>) -> bool,
    ) -> (u64, Vec<Taken<K, V>>) {
        let mut n = 0;
        let mut taken = Vec::new();
        for i in (0..self.hot.slots.len()).rev() {
            let (fresh, stale) = self.times(i);
            let created_at = self.slot_created_at(i, &self.hot.slots[i]);
            let tags = self.tags(i);
            let slot = &mut self.hot.slots[i];
            let lent = Lent {
                entry: Entry::from_parts(slot.value.take(), created_at, fresh, Some(stale), tags),
                home: &mut slot.value,
            };
            let matched = pred(&slot.key, &lent.entry);
            drop(lent);
            if matched {
                let out = self.take_out(i, EvictionReason::Removed);
                if Self::HOLDS_DROPS {
                    taken.extend(out);
                }
                n += 1;
            }
        }
        (n, taken)
    }

    /// Ends every entry's freshness at `cap(hash)` at the latest; entries already
    /// fresh for less long are left alone, and every entry stays servable as
    /// stale until its own stale end. Returns how many entries were shortened.
    pub(crate) fn cap_fresh(&mut self, mut cap: impl FnMut(u64) -> Timestamp) -> u64 {
        let mut n = 0;
        for i in 0..self.hot.slots.len() {
            let until = cap(self.hash_of(i));
            if until < self.times(i).0 {
                self.set_fresh_until(i, until);
                n += 1;
            }
        }
        n
    }
}
