//! The recovery queue: writes and invalidations that could not reach L2 or the
//! bus, kept until Redis answers again.
//!
//! During an outage the local L1 changes at once, but L2 and the other instances
//! never hear of it; without a queue, an invalidation made during an outage is
//! lost until the value's TTL runs out. The queue keeps the *last* operation per
//! target (a key, a tag, a prefix): a later write to the same target replaces the
//! earlier one and moves to the back, so replaying the queue front to back leaves
//! Redis as the operations in their original order would have (operations on one
//! target are idempotent "make it so" writes, and each target's last one is
//! replayed after every operation that preceded it).
//!
//! The queue is bounded. When it is full, the oldest operation is dropped and
//! counted (`cache_recovery_dropped_total`): the keys it covered may be served
//! stale by other instances until their TTL runs out. The alternative, collapsing
//! the queue into a clear of the whole namespace, would be exact but would send
//! every hot key of every instance to the source; it is left to the operator.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use cache_core::{Entry, Timestamp};

/// A write or invalidation waiting for L2.
#[derive(Debug, Clone)]
pub(crate) enum Pending<K, V> {
    /// Store this entry.
    Put(K, Entry<V>),
    /// Remove this key.
    Remove(K),
    /// Remove every entry tagged so.
    Tag(String),
    /// Remove every key whose encoding starts so.
    Prefix(String),
    /// Clear the namespace: everything created before this time.
    Clear(Timestamp),
}

/// What a [`Pending`] operation acts on; one queued operation per target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target<K> {
    Key(K),
    Tag(String),
    Prefix(String),
    Clear,
}

impl<K: Clone, V> Pending<K, V> {
    pub(crate) fn target(&self) -> Target<K> {
        match self {
            Pending::Put(k, _) | Pending::Remove(k) => Target::Key(k.clone()),
            Pending::Tag(t) => Target::Tag(t.clone()),
            Pending::Prefix(p) => Target::Prefix(p.clone()),
            Pending::Clear(_) => Target::Clear,
        }
    }
}

/// What [`RecoveryQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// A new target joined the queue.
    Queued,
    /// The target was queued already; its operation was replaced.
    Replaced,
    /// The queue was full: the oldest operation was dropped to make room.
    DroppedOldest,
}

/// A bounded queue of pending operations, one per target, oldest first.
#[derive(Debug)]
pub(crate) struct RecoveryQueue<K, V> {
    /// Targets in replay order with the sequence number they were queued under;
    /// an item whose number no longer matches `live` is a leftover of a
    /// replaced operation and is skipped.
    order: VecDeque<(u64, Target<K>)>,
    /// Each target's operation and when it was made.
    live: HashMap<Target<K>, (u64, Pending<K, V>, Timestamp)>,
    next: u64,
    capacity: usize,
    /// An operation taken by [`pop`](Self::pop) is being replayed.
    pub(crate) busy: bool,
    /// A worker task is draining the queue.
    pub(crate) worker: bool,
}

impl<K: Clone + Eq + Hash, V> RecoveryQueue<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        RecoveryQueue {
            order: VecDeque::new(),
            live: HashMap::new(),
            next: 0,
            capacity: capacity.max(1),
            busy: false,
            worker: false,
        }
    }

    /// Operations waiting, the one being replayed included.
    pub(crate) fn len(&self) -> usize {
        self.live.len() + usize::from(self.busy)
    }

    /// Whether writes must queue behind earlier ones: something is waiting or
    /// being replayed.
    pub(crate) fn is_pending(&self) -> bool {
        self.busy || !self.live.is_empty()
    }

    fn seq(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Queues `op`, made at `at`, at the back, replacing an operation on the
    /// same target. A clear supersedes everything queued before it (what it
    /// clears covers every earlier write and invalidation).
    pub(crate) fn push(&mut self, op: Pending<K, V>, at: Timestamp) -> Pushed {
        let target = op.target();
        if target == Target::Clear && !self.live.is_empty() {
            self.live.clear();
            self.order.clear();
            let seq = self.seq();
            self.live.insert(target.clone(), (seq, op, at));
            self.order.push_back((seq, target));
            return Pushed::Replaced;
        }
        let seq = self.seq();
        let replaced = self.live.insert(target.clone(), (seq, op, at)).is_some();
        self.order.push_back((seq, target));
        let pushed = if replaced {
            Pushed::Replaced
        } else if self.live.len() > self.capacity {
            self.pop();
            Pushed::DroppedOldest
        } else {
            Pushed::Queued
        };
        self.compact();
        pushed
    }

    /// Puts an operation whose replay failed back at the front, unless a newer
    /// operation on its target was queued meanwhile (that one wins).
    pub(crate) fn retry(&mut self, op: Pending<K, V>, at: Timestamp) {
        let target = op.target();
        if self.live.contains_key(&target) {
            return;
        }
        let seq = self.seq();
        self.live.insert(target.clone(), (seq, op, at));
        self.order.push_front((seq, target));
    }

    /// Takes the oldest operation and when it was made.
    pub(crate) fn pop(&mut self) -> Option<(Pending<K, V>, Timestamp)> {
        while let Some((seq, target)) = self.order.pop_front() {
            if self.live.get(&target).is_some_and(|(s, _, _)| *s == seq) {
                return self.live.remove(&target).map(|(_, op, at)| (op, at));
            }
        }
        None
    }

    /// Drops leftovers of replaced operations once they outnumber the live ones.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.live.len() + 64 {
            let live = &self.live;
            self.order
                .retain(|(seq, target)| live.get(target).is_some_and(|(s, _, _)| s == seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::Timestamp;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    const T: Timestamp = Timestamp::ZERO;

    fn put(k: u8, v: u32) -> Pending<u8, u32> {
        Pending::Put(k, Entry::new(v, Timestamp::ZERO, Duration::from_secs(60)))
    }

    fn drain(q: &mut RecoveryQueue<u8, u32>) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|(op, _)| match op {
                Pending::Put(k, e) => format!("put {k}={}", e.value().copied().unwrap_or(0)),
                Pending::Remove(k) => format!("remove {k}"),
                Pending::Tag(t) => format!("tag {t}"),
                Pending::Prefix(p) => format!("prefix {p}"),
                Pending::Clear(at) => format!("clear {}", at.as_millis()),
            })
            .collect()
    }

    #[test]
    fn the_last_write_per_key_wins_and_moves_to_the_back() {
        let mut q = RecoveryQueue::new(10);
        assert_eq!(q.push(put(1, 10), T), Pushed::Queued);
        assert_eq!(q.push(Pending::Remove(2), T), Pushed::Queued);
        assert_eq!(q.push(put(1, 11), T), Pushed::Replaced);
        assert_eq!(q.push(Pending::Tag("t".into()), T), Pushed::Queued);
        assert_eq!(q.len(), 3);
        assert_eq!(drain(&mut q), ["remove 2", "put 1=11", "tag t"]);
        assert!(!q.is_pending());
    }

    #[test]
    fn a_clear_supersedes_everything_queued_before_it() {
        let mut q = RecoveryQueue::new(10);
        q.push(put(1, 1), T);
        q.push(Pending::Tag("t".into()), T);
        assert_eq!(
            q.push(Pending::Clear(Timestamp::from_millis(7)), T),
            Pushed::Replaced
        );
        q.push(put(2, 2), T);
        assert_eq!(q.len(), 2);
        assert_eq!(drain(&mut q), ["clear 7", "put 2=2"]);
        assert_eq!(
            q.push(Pending::Clear(Timestamp::from_millis(8)), T),
            Pushed::Queued
        );
    }

    #[test]
    fn overflow_drops_the_oldest_and_says_so() {
        let mut q = RecoveryQueue::new(2);
        q.push(put(1, 1), T);
        q.push(put(2, 2), T);
        assert_eq!(q.push(put(3, 3), T), Pushed::DroppedOldest);
        assert_eq!(q.len(), 2);
        assert_eq!(drain(&mut q), ["put 2=2", "put 3=3"]);
    }

    #[test]
    fn a_failed_replay_goes_back_to_the_front_unless_superseded() {
        let mut q = RecoveryQueue::new(10);
        q.push(put(1, 1), T);
        q.push(put(2, 2), T);
        let first = q.pop().expect("queued");
        q.retry(first.0, T);
        assert_eq!(drain(&mut q), ["put 1=1", "put 2=2"]);

        q.push(put(1, 1), T);
        let first = q.pop().expect("queued");
        q.push(put(1, 5), T);
        q.retry(first.0, T);
        assert_eq!(drain(&mut q), ["put 1=5"]);
    }

    #[test]
    fn leftovers_of_replaced_writes_do_not_pile_up() {
        let mut q = RecoveryQueue::new(4);
        for v in 0..10_000 {
            q.push(put(1, v), T);
        }
        assert_eq!(q.len(), 1);
        assert!(q.order.len() <= 2 * q.len() + 65, "{}", q.order.len());
    }

    /// A write of the model: keys 0..30, prefixes over their decimal encodings.
    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, u32),
        Remove(u8),
        Prefix(u8),
        Clear,
    }

    fn apply(state: &mut BTreeMap<u8, u32>, op: &Pending<u8, u32>) {
        match op {
            Pending::Put(k, e) => {
                state.insert(*k, e.value().copied().unwrap_or(0));
            }
            Pending::Remove(k) => {
                state.remove(k);
            }
            Pending::Prefix(p) => state.retain(|k, _| !k.to_string().starts_with(p.as_str())),
            Pending::Clear(_) => state.clear(),
            Pending::Tag(_) => {}
        }
    }

    fn to_pending(op: &Op) -> Pending<u8, u32> {
        match op {
            Op::Set(k, v) => put(*k, *v),
            Op::Remove(k) => Pending::Remove(*k),
            Op::Prefix(d) => Pending::Prefix(d.to_string()),
            Op::Clear => Pending::Clear(T),
        }
    }

    proptest! {
        /// Replaying the de-duplicated queue leaves the same state as applying
        /// every operation in order (while nothing overflows).
        #[test]
        fn replay_matches_applying_everything_in_order(
            initial in proptest::collection::btree_map(0u8..30, any::<u32>(), 0..8),
            ops in proptest::collection::vec(prop_oneof![
                (0u8..30, any::<u32>()).prop_map(|(k, v)| Op::Set(k, v)),
                (0u8..30).prop_map(Op::Remove),
                (0u8..8).prop_map(Op::Prefix),
                Just(Op::Clear),
            ], 0..40),
        ) {
            let mut expected = initial.clone();
            let mut q = RecoveryQueue::new(64);
            for op in &ops {
                let p = to_pending(op);
                apply(&mut expected, &p);
                q.push(p, T);
            }
            let mut replayed = initial;
            while let Some((op, _)) = q.pop() {
                apply(&mut replayed, &op);
            }
            prop_assert_eq!(replayed, expected);
        }
    }
}
