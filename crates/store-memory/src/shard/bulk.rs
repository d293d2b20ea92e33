//! Operations over every entry of a shard: expiry sweeps, removal by predicate
//! (tags, prefixes) and shortening freshness after a bus gap.

use std::hash::Hash;
use std::time::Duration;

use cache_core::{Entry, Timestamp};

use super::times::packed_times;
use super::{Shard, WIDE};
use crate::stats::EvictionReason;

/// Lends a node's value to an [`Entry`] for a predicate, and puts it back even
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
        // Backwards: `detach` moves the last slot into the hole, and that slot
        // has been looked at already.
        for i in (0..self.links.len()).rev() {
            if self.dead(i, now) {
                self.discard(i, EvictionReason::Expired);
                n += 1;
            }
        }
        n
    }

    /// Removes every entry matching `pred`; returns how many.
    pub(crate) fn remove_where(&mut self, mut pred: impl FnMut(&K, &Entry<V>) -> bool) -> u64 {
        let mut n = 0;
        for i in (0..self.links.len()).rev() {
            let link = &self.links[i];
            let Some(node) = self.table.find_mut(link.hash, |n| n.slot as usize == i) else {
                continue;
            };
            let lent = Lent {
                entry: Entry::from_parts(
                    node.value.take(),
                    node.created_at,
                    link.fresh_until,
                    Some(link.stale_until),
                    link.tags.clone(),
                ),
                home: &mut node.value,
            };
            let matched = pred(&node.key, &lent.entry);
            drop(lent);
            if matched {
                self.discard(i, EvictionReason::Removed);
                n += 1;
            }
        }
        n
    }

    /// Ends every entry's freshness at `cap(hash)` at the latest; entries already
    /// fresh for less long are left alone, and every entry stays servable as
    /// stale until its own stale end. Returns how many entries were shortened.
    pub(crate) fn cap_fresh(&mut self, mut cap: impl FnMut(u64) -> Timestamp) -> u64 {
        let mut n = 0;
        for i in 0..self.links.len() {
            let link = &mut self.links[i];
            let until = cap(link.hash);
            if until >= link.fresh_until {
                continue;
            }
            link.fresh_until = until;
            let (hash, stale_until) = (link.hash, link.stale_until);
            let Some(node) = self.table.find_mut(hash, |n| n.slot as usize == i) else {
                continue;
            };
            match packed_times(node.created_at, until, stale_until) {
                Some((f, s)) => {
                    node.fresh_ms = f;
                    node.stale_ms = s;
                    node.flags &= !WIDE;
                }
                None => node.flags |= WIDE,
            }
            n += 1;
        }
        n
    }
}
