//! The slots' bookkeeping: the two intrusive FIFO lists, taking a slot out
//! (the last slot moves into its place, and everything that points at it is
//! repointed), rewriting an entry's times, and the invariants' check.

use std::hash::Hash;

use cache_core::Timestamp;

use super::times::packed_times;
use super::{Extra, Fifo, HAS_EXTRA, IN_MAIN, NIL, Queue, Shard, Slot, WIDE};

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// Takes slot `i` out of its list, the table, the side tables and the
    /// `Vec` (the last slot moves into its place); returns it.
    pub(super) fn detach(&mut self, i: usize) -> Slot<K, V> {
        self.unlink(i);
        let at = i as u32;
        if let Ok(found) = self.hot.table.find_entry(self.hash_of(i), |&s| s == at) {
            found.remove();
        }
        self.weight = self.weight.saturating_sub(self.weight_of(i));
        if self.hot.slots[i].flags & HAS_EXTRA != 0 {
            self.extras.remove(&at);
        }
        if !self.untouched.is_empty() {
            self.untouched.swap_remove(i);
        }
        let slot = self.hot.slots.swap_remove(i);
        let moved = self.hot.slots.len();
        if i < moved {
            // The former last slot is now `i`: repoint everything at it.
            let hash = self.hash_of(i);
            let (prev, next, queue, flags) = {
                let s = &self.hot.slots[i];
                (s.prev, s.next, s.queue(), s.flags)
            };
            let list = self.list(queue);
            if prev == NIL {
                list.head = at;
            } else {
                self.hot.slots[prev as usize].next = at;
            }
            let list = self.list(queue);
            if next == NIL {
                list.tail = at;
            } else {
                self.hot.slots[next as usize].prev = at;
            }
            if let Some(s) = self.hot.table.find_mut(hash, |&s| s as usize == moved) {
                *s = at;
            }
            if flags & HAS_EXTRA != 0
                && let Some(extra) = self.extras.remove(&(moved as u32))
            {
                self.extras.insert(at, extra);
            }
        }
        slot
    }

    pub(super) fn list(&mut self, queue: Queue) -> &mut Fifo {
        match queue {
            Queue::Small => &mut self.small,
            Queue::Main => &mut self.main,
        }
    }

    pub(super) fn unlink(&mut self, i: usize) {
        let weight = self.weight_of(i);
        let slot = &mut self.hot.slots[i];
        let (prev, next, queue) = (slot.prev, slot.next, slot.queue());
        slot.prev = NIL;
        slot.next = NIL;
        if prev != NIL {
            self.hot.slots[prev as usize].next = next;
        }
        if next != NIL {
            self.hot.slots[next as usize].prev = prev;
        }
        let list = self.list(queue);
        if prev == NIL {
            list.head = next;
        }
        if next == NIL {
            list.tail = prev;
        }
        list.len -= 1;
        list.weight = list.weight.saturating_sub(weight);
    }

    pub(super) fn push_back(&mut self, i: usize, queue: Queue) {
        let weight = self.weight_of(i);
        let list = self.list(queue);
        let tail = list.tail;
        list.tail = i as u32;
        if tail == NIL {
            list.head = i as u32;
        }
        list.len += 1;
        list.weight = list.weight.saturating_add(weight);
        if tail != NIL {
            self.hot.slots[tail as usize].next = i as u32;
        }
        let slot = &mut self.hot.slots[i];
        match queue {
            Queue::Small => slot.flags &= !IN_MAIN,
            Queue::Main => slot.flags |= IN_MAIN,
        }
        slot.prev = tail;
        slot.next = NIL;
    }

    /// Rewrites slot `i`'s freshness end (its stale end stays).
    pub(super) fn set_fresh_until(&mut self, i: usize, until: Timestamp) {
        let stale_until = self.times(i).1;
        let created_at = self.slot_created_at(i, &self.hot.slots[i]);
        let packed = packed_times(created_at, until, stale_until);
        let (weight, tags) = (self.weight_of(i), self.tags(i));
        let slot = &mut self.hot.slots[i];
        slot.fresh_until = until;
        match packed {
            Some((a, s)) => {
                slot.age_ms = a;
                slot.stale_ms = s;
                slot.flags &= !WIDE;
            }
            None => slot.flags |= WIDE,
        }
        if slot.flags & HAS_EXTRA == 0 {
            self.extras.remove(&(i as u32));
        } else {
            let extra = self.extras.entry(i as u32).or_insert(Extra {
                created_at,
                fresh_until: until,
                stale_until,
                tags,
                weight,
            });
            extra.fresh_until = until;
        }
    }

    /// Checks the lists, the table, the side tables and the totals (tests only).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut seen = 0;
        for (queue, list) in [(Queue::Small, &self.small), (Queue::Main, &self.main)] {
            let (mut i, mut prev, mut len, mut weight) = (list.head, NIL, 0, 0u64);
            while i != NIL {
                let s = &self.hot.slots[i as usize];
                assert_eq!(s.queue(), queue);
                assert_eq!(s.prev, prev);
                len += 1;
                weight += self.weight_of(i as usize);
                prev = i;
                i = s.next;
            }
            assert_eq!(list.tail, prev);
            assert_eq!((list.len, list.weight), (len, weight));
            seen += len;
        }
        assert_eq!(seen, self.hot.slots.len());
        assert_eq!(self.hot.table.len(), self.hot.slots.len());
        let with_extra = self.hot.slots.iter().filter(|s| s.flags & HAS_EXTRA != 0);
        assert_eq!(self.extras.len(), with_extra.count());
        for (i, s) in self.hot.slots.iter().enumerate() {
            assert_eq!(self.find(self.hash_of(i), &s.key), Some(i));
            assert_eq!(s.flags & super::TAGGED != 0, !self.tags(i).is_empty());
            if let Some(e) = self.extra(i) {
                assert_eq!(self.times(i), (e.fresh_until, e.stale_until));
                assert_eq!(self.weight_of(i), e.weight);
                assert_eq!(self.tags(i).is_empty(), e.tags.is_empty());
            }
        }
        if self.hot.idle_ms.is_some() {
            assert_eq!(self.untouched.len(), self.hot.slots.len());
        }
        let total: u64 = (0..self.hot.slots.len()).map(|i| self.weight_of(i)).sum();
        assert_eq!(self.weight, total);
        // `dead` and the head reclaim trust this bound to skip their checks.
        for i in 0..self.hot.slots.len() {
            assert!(
                self.first_death <= self.death(i),
                "slot {i} dies before first_death"
            );
        }
    }
}
