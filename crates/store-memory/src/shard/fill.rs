//! Filling slots: a new entry at the tail of a queue, a replacement where it
//! stands, and how a slot packs an entry's times and weight.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU8, AtomicU32};

use cache_core::{Entry, Timestamp};

use super::times::packed_times;
use super::{
    Extra, HAS_EXTRA, HEAVY, IN_MAIN, MAX_FREQ, NIL, Packed, Queue, RETURNING, Shard, Slot, TAGGED,
    WIDE, idle_offset,
};
use crate::stats::RemovalCause;

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// Adds an entry at the tail of `queue`.
    // Always inlined into `Shard::put`, its hot caller: the compiler's own
    // choice flips with unrelated changes (ARCHITECTURE.md, "Destructors run
    // outside the lock"), and a call costs a put ~35 instructions.
    #[inline(always)]
    pub(super) fn attach(
        &mut self,
        hash: u64,
        key: K,
        entry: Entry<V>,
        (weight, now): (u64, Timestamp),
        queue: Queue,
        (freq, policy_flags): (u8, u8),
    ) {
        let i = self.hot.slots.len();
        self.grow_slots();
        let packed = self.pack(i, &entry, weight, policy_flags);
        self.note_death(entry.stale_until(), now);
        if self.hot.idle_ms.is_some() {
            let offset = idle_offset(entry.stale_until(), now);
            self.untouched.push(AtomicU32::new(offset));
        }
        self.weight = self.weight.saturating_add(weight);
        self.hot.slots.push(Slot {
            key,
            value: entry.into_value(),
            fresh_until: packed.fresh_until,
            age_ms: packed.age_ms,
            stale_ms: packed.stale_ms,
            prev: NIL,
            next: NIL,
            weight: packed.weight,
            freq: AtomicU8::new(freq),
            flags: packed.flags,
        });
        let (slots, hasher) = (&self.hot.slots, &self.hasher);
        self.hot
            .table
            .insert_unique(hash, i as u32, |&s| hasher.hash_one(&slots[s as usize].key));
        self.push_back(i, queue);
    }

    /// Replaces slot `i`'s entry (of `old_weight`) where it stands (same
    /// place in its queue, a read counted); the old key and value go to the
    /// listener. The caller has checked that the new weight fits.
    // Always inlined, as `attach` is.
    #[inline(always)]
    pub(super) fn replace(
        &mut self,
        i: usize,
        key: K,
        entry: Entry<V>,
        (old_weight, weight, now): (u64, u64, Timestamp),
    ) {
        let queue = self.hot.slots[i].queue();
        let keep = self.hot.slots[i].flags & (RETURNING | IN_MAIN);
        if self.hot.slots[i].flags & HAS_EXTRA != 0 {
            self.extras.remove(&(i as u32));
        }
        let packed = self.pack(i, &entry, weight, keep);
        self.note_death(entry.stale_until(), now);
        if self.hot.idle_ms.is_some() {
            let offset = idle_offset(entry.stale_until(), now);
            self.untouched[i] = AtomicU32::new(offset);
        }
        self.weight = self
            .weight
            .saturating_sub(old_weight)
            .saturating_add(weight);
        let list = self.list(queue);
        list.weight = list
            .weight
            .saturating_sub(old_weight)
            .saturating_add(weight);
        let slot = &mut self.hot.slots[i];
        let old_key = std::mem::replace(&mut slot.key, key);
        let old_value = std::mem::replace(&mut slot.value, entry.into_value());
        slot.fresh_until = packed.fresh_until;
        slot.age_ms = packed.age_ms;
        slot.stale_ms = packed.stale_ms;
        slot.weight = packed.weight;
        slot.flags = packed.flags;
        let freq = slot.freq.get_mut();
        *freq = (*freq + 1).min(MAX_FREQ);
        self.hand_over(old_key, old_value, RemovalCause::Replaced);
    }

    /// How slot `i` keeps `entry`'s times and `weight`: packed when they fit,
    /// otherwise in an [`Extra`] stored for `i` here.
    #[inline]
    fn pack(&mut self, i: usize, entry: &Entry<V>, weight: u64, policy_flags: u8) -> Packed {
        let created_at = entry.created_at();
        let (fresh_until, stale_until) = (entry.fresh_until(), entry.stale_until());
        let mut flags = policy_flags;
        let (age_ms, stale_ms) =
            packed_times(created_at, fresh_until, stale_until).unwrap_or_else(|| {
                flags |= WIDE;
                (0, 0)
            });
        if !entry.tags().is_empty() {
            flags |= TAGGED;
        }
        let light = u32::try_from(weight).unwrap_or_else(|_| {
            flags |= HEAVY;
            u32::MAX
        });
        if flags & HAS_EXTRA != 0 {
            let extra = Extra {
                created_at,
                fresh_until,
                stale_until,
                tags: entry.tags().clone(),
                weight,
            };
            self.extras.insert(i as u32, extra);
        }
        Packed {
            fresh_until,
            age_ms,
            stale_ms,
            weight: light,
            flags,
        }
    }

    /// Makes room for one more slot: doublings up to the shard's share (a shard
    /// that fills to it wastes nothing), small steps beyond it.
    fn grow_slots(&mut self) {
        let (len, cap) = (self.hot.slots.len(), self.hot.slots.capacity());
        if len < cap {
            return;
        }
        let step = if cap < self.share {
            cap.max(4).min(self.share - cap)
        } else {
            (self.share / 16).max(4)
        };
        self.hot.slots.reserve_exact(step);
    }
}
