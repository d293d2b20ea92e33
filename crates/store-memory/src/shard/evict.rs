//! Eviction: S3-FIFO's queues with TinyLFU admission into *main*, made
//! adaptive by regret; and expired entries dropped from the list heads.
//!
//! New keys enter *small*. When *small* holds more than its share, its head
//! leaves: a key read while there moves on to *main*; one that was not is the
//! **candidate**. While *main* is still filling, the candidate simply moves in.
//! Otherwise it takes the place of *main*'s **victim** (found by CLOCK: heads
//! that were read go round again with one read spent) only if the frequency
//! sketch has seen it wanted more often than the victim, by a margin (`bias`);
//! otherwise it is evicted. Scans and loops bigger than the cache therefore
//! cannot churn *main*: a key seen once never beats one that proved itself.
//!
//! The margin adapts, like ARC's target: a rejected candidate that is wanted
//! again soon (it is in the `rejected` ghost) lowers it, a victim displaced by
//! an admitted candidate that is wanted again (the `displaced` ghost) raises
//! it. Recency-heavy workloads end up admitting freely, frequency-heavy ones
//! guarding *main*. A large store may also switch the contest off and admit
//! every returning candidate (`free_admission`), when two miniature copies
//! of the policy show that rule hitting more (`shadow.rs`).

use std::hash::Hash;

use cache_core::Timestamp;

use super::{HEAD_RECLAIM, NIL, PROMOTE_AT, Queue, RETURNING, Shard};
use crate::stats::EvictionReason;

/// The strictest margin: a candidate must have been wanted this many times
/// more than the victim.
const MAX_BIAS: i8 = 8;
/// The most lenient margin (still, a candidate wanted only once never wins).
const MIN_BIAS: i8 = 0;

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// Evicts one entry (see the module's documentation); false when the
    /// shard is empty. An entry that had already expired counts as expired,
    /// whatever `reason`.
    pub(super) fn evict_one(&mut self, reason: EvictionReason, now: Timestamp) -> bool {
        // The shard is full: from now on admission needs the sketch.
        self.sketch.start();
        let from_small = self.small.len > 0
            && (self.small.len > self.small_entries
                || self.small.weight > self.small_weight
                || self.main.len == 0);
        if from_small && let Some(candidate) = self.small_candidate(now) {
            return self.evict_candidate(candidate, reason, now);
        }
        match self.main_victim(now) {
            Some(v) => {
                self.evict(v, reason, now);
                true
            }
            // Main ran dry while small's readers moved over: take from small.
            None => match self.small_candidate(now) {
                Some(c) => {
                    self.evict(c, reason, now);
                    true
                }
                None => false,
            },
        }
    }

    /// Moves *small*'s read heads on to *main*; the first head that was not
    /// read (or expired), if any.
    fn small_candidate(&mut self, now: Timestamp) -> Option<usize> {
        self.pass_read_heads(Queue::Small, now)
    }

    /// Sends *main*'s read heads round again with one read spent; the first
    /// head that was not read (or expired), if any.
    fn main_victim(&mut self, now: Timestamp) -> Option<usize> {
        self.pass_read_heads(Queue::Main, now)
    }

    /// Walks `queue` from its head: a head that was read spends its reads
    /// (all of them leaving *small*, one going round *main*), they reach the
    /// sketch, and it goes to *main*'s tail. Returns the first head that was
    /// not read, or expired.
    fn pass_read_heads(&mut self, queue: Queue, now: Timestamp) -> Option<usize> {
        loop {
            let head = self.list(queue).head;
            if head == NIL {
                return None;
            }
            let i = head as usize;
            if self.dead(i, now) {
                return Some(i);
            }
            let slot = &mut self.hot.slots[i];
            let freq = slot.freq.get_mut();
            let spent = match queue {
                Queue::Small if *freq >= PROMOTE_AT => *freq,
                Queue::Small => 0,
                Queue::Main => (*freq).min(1),
            };
            *freq -= spent;

            if spent == 0 {
                return Some(i);
            }
            for _ in 0..spent {
                self.sketch.increment(self.hash_of(i));
            }
            self.unlink(i);
            self.push_back(i, Queue::Main);
        }
    }

    /// Evicts *small*'s candidate, or lets it replace *main*'s victim.
    fn evict_candidate(&mut self, c: usize, reason: EvictionReason, now: Timestamp) -> bool {
        if self.dead(c, now) {
            self.evict(c, reason, now);
            return true;
        }
        if self.main.len + self.small_entries + 1 < self.quota {
            // Main is still filling: the candidate moves in, and small gives
            // up its next head instead.
            self.unlink(c);
            self.push_back(c, Queue::Main);
            return self.evict_one(reason, now);
        }
        let c_hash = self.hash_of(c);
        // Only a key that lost before and came back may contest: a key seen
        // for the first time (a scan) never displaces anything, whatever the
        // sketch's collisions say.
        // (Nor is the sketch read for a first-timer: its line is one fetch
        // from memory the insert of a new key need not wait for.)
        if self.hot.slots[c].flags & RETURNING == 0 {
            self.rejected.add(c_hash);
        } else {
            let c_wants = self.sketch.estimate(c_hash);
            if let Some(v) = self.main_victim(now) {
                let v_hash = self.hash_of(v);
                if self.dead(v, now)
                    || self.free_admission
                    || self.admits(c_wants, self.sketch.estimate(v_hash))
                {
                    // Evicting `v` moves the last slot into `v`'s place.
                    let last = self.hot.slots.len() - 1;
                    self.evict(v, reason, now);
                    self.displaced.add(v_hash);
                    let c = if c == last { v } else { c };
                    self.unlink(c);
                    self.push_back(c, Queue::Main);
                    return true;
                }
                self.rejected.add(c_hash);
            }
        }
        self.evict(c, reason, now);
        true
    }

    /// Whether a candidate wanted `c` times takes the place of a victim wanted
    /// `v` times.
    fn admits(&self, c: u64, v: u64) -> bool {
        let need = (v as i64 + i64::from(self.bias)).max(1);
        c as i64 > need
    }

    /// A new key that eviction decided against recently says which way
    /// admission erred; true if it lost a contest (it may contest again).
    pub(super) fn note_return(&mut self, hash: u64) -> bool {
        let returning = self.rejected.contains(hash);
        if returning {
            self.regret(false);
        } else if self.displaced.contains(hash) {
            self.regret(true);
        }
        returning
    }

    /// Learns from a key that came back: one rejected from *small* (`admitted`
    /// false) asks for easier admission, one displaced from *main* by an
    /// admitted candidate (`admitted` true) for stricter.
    fn regret(&mut self, admitted: bool) {
        self.bias = if admitted {
            (self.bias + 1).min(MAX_BIAS)
        } else {
            (self.bias - 1).max(MIN_BIAS)
        };
    }

    /// Discards slot `i`, counted as expired if it was.
    fn evict(&mut self, i: usize, reason: EvictionReason, now: Timestamp) {
        let reason = if self.dead(i, now) {
            EvictionReason::Expired
        } else {
            reason
        };
        self.discard(i, reason);
    }

    /// Drops expired entries found at the heads of the lists.
    pub(super) fn reclaim_heads(&mut self, now: Timestamp) {
        if now < self.first_death {
            // Nothing can have expired yet: no head to look at.
            return;
        }
        for _ in 0..HEAD_RECLAIM {
            // One list at a time: dropping a node moves another one's slot.
            let small = self.drop_expired_head(Queue::Small, now);
            let main = self.drop_expired_head(Queue::Main, now);
            if !small && !main {
                break;
            }
        }
    }

    fn drop_expired_head(&mut self, queue: Queue, now: Timestamp) -> bool {
        let head = self.list(queue).head;
        if head != NIL && self.dead(head as usize, now) {
            self.discard(head as usize, EvictionReason::Expired);
            true
        } else {
            false
        }
    }
}
