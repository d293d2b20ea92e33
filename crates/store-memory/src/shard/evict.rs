//! Eviction: the S3-FIFO choice of a victim, and expired entries dropped from
//! the list heads.

use std::hash::Hash;

use cache_core::Timestamp;

use super::{HEAD_RECLAIM, NIL, PROMOTE_AT, Queue, Shard};
use crate::stats::EvictionReason;

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// Evicts one entry, following S3-FIFO; false when the shard is empty. An
    /// entry that had already expired counts as expired, whatever `reason`.
    pub(super) fn evict_one(&mut self, reason: EvictionReason, now: Timestamp) -> bool {
        // Once small is chosen, its head keys that were read move on to main until
        // one that was not is found; only if small runs dry does main give one up.
        let mut from_small = self.small.len > 0
            && (self.small.len > self.small_entries
                || self.small.weight > self.small_weight
                || self.main.len == 0);
        loop {
            from_small &= self.small.len > 0;
            let i = if from_small {
                self.small.head
            } else {
                self.main.head
            };
            if i == NIL {
                return false;
            }
            let i = i as usize;
            let expired = self.dead(i, now);
            // A key that was read moves to main's tail: from small with its count
            // reset, within main with one read spent.
            let passed_over = !expired
                && self.node_mut(i).is_some_and(|node| {
                    let freq = node.freq.get_mut();
                    if from_small && *freq >= PROMOTE_AT {
                        *freq = 0;
                        true
                    } else if !from_small && *freq > 0 {
                        *freq -= 1;
                        true
                    } else {
                        false
                    }
                });
            if passed_over {
                self.unlink(i);
                self.push_back(i, Queue::Main);
                continue;
            }
            let reason = if expired {
                EvictionReason::Expired
            } else {
                reason
            };
            let link = self.discard(i, reason);
            if from_small && !expired {
                self.ghost.add(link.hash);
            }
            return true;
        }
    }

    /// Drops expired entries found at the heads of the lists.
    pub(super) fn reclaim_heads(&mut self, now: Timestamp) {
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
