//! One shard: S3-FIFO queues with adaptive TinyLFU admission, under
//! entry-count and weight bounds.
//!
//! Entries live inline in a `HashTable` (key, value, packed times, read counter),
//! so a hit touches the table and nothing else. What only writers need (list
//! links, weight, hash, full times, tags) sits in a dense `Vec` of links that the
//! node points into; two intrusive FIFO lists through those links order the
//! entries:
//!
//! - **small** takes new keys (a twentieth of the shard). A key read at least
//!   once while it is there moves to *main* when it reaches the head; one that
//!   was not is a candidate for *main* (see `evict.rs`).
//! - **main** holds keys that proved themselves. Its head is evicted only when its
//!   read counter (0..=3) is zero; otherwise the counter drops by one and the key
//!   goes round again (a CLOCK with a small counter).
//! - A **frequency sketch** (`sketch.rs`) and two **ghosts** (`ghost.rs`) decide
//!   whether a candidate takes the place of *main*'s victim.
//!
//! One-time keys (a scan) pass through *small* without pushing out the working
//! set, a loop bigger than the cache keeps a fixed part of itself instead of
//! churning, and a read only bumps an atomic counter, so hits need nothing more
//! than the shard's read lock. The queues are S3-FIFO's (Yang et al., SOSP
//! 2023); the admission is TinyLFU's (Einziger et al., 2017), gated and made
//! adaptive by ghosts as ARC adapts its target (Megiddo and Modha, 2003).

use std::hash::Hash;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use cache_core::{Entry, Tags, Timestamp};
use hashbrown::HashTable;

use crate::spare::Spare;

mod bulk;
mod evict;
mod ghost;
#[cfg(test)]
mod policy_tests;
mod sketch;
mod times;

use crate::stats::{Counters, EvictionReason, RemovalCause};
use ghost::Ghost;
use sketch::Sketch;
use times::packed_times;

pub(crate) type Hasher = foldhash::fast::RandomState;

/// No node: the end of a list.
const NIL: u32 = u32::MAX;
/// Reads remembered per entry.
const MAX_FREQ: u8 = 3;
/// Reads while in *small* that earn a key its place in *main*.
pub(crate) const PROMOTE_AT: u8 = 1;
/// The share of a shard's entries (and weight) that *small* may hold, in percent.
pub(crate) const SMALL_PERCENT: usize = 5;
/// Expired entries dropped from each list head on every put, at most.
const HEAD_RECLAIM: usize = 2;
/// A full sweep runs after this many puts, or after as many puts as there are
/// entries, whichever is larger: amortized O(1) per put.
const MIN_SWEEP_INTERVAL: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

/// Node flag: the entry's times do not fit the two deltas; read them from its
/// [`Link`].
const WIDE: u8 = 1;
/// Node flag: the entry has tags (kept in its [`Link`]).
const TAGGED: u8 = 2;
/// Node flag: the key lost an admission contest recently and came back (it was
/// in the `rejected` ghost when inserted): only such keys may contest again.
const RETURNING: u8 = 4;

/// What a hit reads, stored inline in the shard's table so a hit touches the
/// table's control bytes and this node, nothing else. The entry's times are
/// packed as millisecond deltas (exact whenever they fit in `u32`, about 49
/// days) and its tags live with the links, so a node for `u64` keys and values
/// is 48 bytes.
struct Node<K, V> {
    key: K,
    value: Option<V>,
    created_at: Timestamp,
    /// `fresh_until - created_at`, in milliseconds (unless [`WIDE`]).
    fresh_ms: u32,
    /// `stale_until - fresh_until`, in milliseconds (unless [`WIDE`]).
    stale_ms: u32,
    /// Where the node's [`Link`] is.
    slot: u32,
    /// Reads since the key was last passed over by eviction (saturating at
    /// [`MAX_FREQ`]); bumped under the read lock, hence atomic.
    freq: AtomicU8,
    /// [`WIDE`] and [`TAGGED`].
    flags: u8,
}

/// What only writers (and the rare hit on a wide or tagged entry, or any hit
/// with a time to idle) use, in a dense `Vec` indexed by [`Node::slot`].
#[derive(Debug)]
struct Link {
    prev: u32,
    next: u32,
    queue: Queue,
    /// How long before `stale_until` the entry was stored or last read, in
    /// milliseconds (saturating: an entry touched more than ~49 days before
    /// its stale end counts as touched 49 days before it). Only a time to idle
    /// reads it; bumped under the read lock, hence atomic. Kept as a 4-byte
    /// offset so it fits in padding: a link is no bigger for it.
    untouched: AtomicU32,
    weight: u64,
    hash: u64,
    fresh_until: Timestamp,
    stale_until: Timestamp,
    tags: Tags,
}

impl Link {
    /// `untouched` for a touch at `now`.
    fn offset(stale_until: Timestamp, now: Timestamp) -> u32 {
        u32::try_from(stale_until.as_millis().saturating_sub(now.as_millis())).unwrap_or(u32::MAX)
    }
}

/// An entry that left a shard, kept for the eviction listener until the
/// shard's lock is released.
pub(crate) type Removed<K, V> = (K, Option<V>, RemovalCause);

/// What a shard does beyond bounding itself.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extras {
    /// Keep what leaves the shard for an eviction listener.
    pub(crate) notify: bool,
    /// Remove entries not read for this many milliseconds.
    pub(crate) idle_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Fifo {
    head: u32,
    tail: u32,
    len: usize,
    weight: u64,
}

impl Fifo {
    const EMPTY: Fifo = Fifo {
        head: NIL,
        tail: NIL,
        len: 0,
        weight: 0,
    };
}

/// What a read under the shared lock found.
pub(crate) enum Read<V> {
    Hit(Entry<V>),
    /// Present but expired: the caller removes it under the write lock.
    Expired,
    Miss,
}

pub(crate) struct Shard<K, V> {
    table: HashTable<Node<K, V>>,
    links: Vec<Link>,
    small: Fifo,
    main: Fifo,
    /// Candidates that lost to *main*'s victim.
    rejected: Ghost,
    /// *main*'s victims that lost their place to an admitted candidate.
    displaced: Ghost,
    /// How much more often than *main*'s victim a candidate must have been
    /// wanted to take its place; moved by regret (see `evict.rs`).
    bias: i8,
    sketch: Sketch,
    weight: u64,
    /// Entries this shard may hold: what it owns plus what it drew from the
    /// store's [`Spare`] pool.
    quota: usize,
    /// The part of `quota` that is the shard's own.
    owned: usize,
    max_weight: u64,
    small_entries: usize,
    small_weight: u64,
    /// Puts since the last full sweep for expired entries.
    puts_since_sweep: usize,
    pub(crate) counters: Counters,
    /// What left the shard since the listener last heard (with a listener only).
    pub(crate) removed: Option<Vec<Removed<K, V>>>,
    idle_ms: Option<u64>,
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// A shard whose fair share of the store is `share` entries, `owned` of them
    /// its own (the rest it draws from the [`Spare`] pool when it needs them).
    pub(crate) fn new(share: usize, owned: usize, max_weight: u64, extras: Extras) -> Self {
        Shard {
            table: HashTable::new(),
            links: Vec::new(),
            small: Fifo::EMPTY,
            main: Fifo::EMPTY,
            // Remembered for 4–8 shares of contests: a popular key with a long
            // reuse distance still counts as returning.
            rejected: Ghost::new(share * 4),
            displaced: Ghost::new(share / 2),
            bias: 0,
            sketch: Sketch::new(share),
            weight: 0,
            quota: owned,
            owned,
            max_weight,
            small_entries: (share * SMALL_PERCENT / 100).max(1),
            small_weight: (max_weight / 100)
                .saturating_mul(SMALL_PERCENT as u64)
                .max(1),
            puts_since_sweep: 0,
            counters: Counters::default(),
            removed: extras.notify.then(Vec::new),
            idle_ms: extras.idle_ms,
        }
    }

    /// Whether slot `i` may no longer be served: past its stale end, or idle
    /// for longer than the time to idle.
    fn dead(&self, i: usize, now: Timestamp) -> bool {
        let link = &self.links[i];
        now >= link.stale_until || self.idle(link, now)
    }

    fn idle(&self, link: &Link, now: Timestamp) -> bool {
        self.idle_ms.is_some_and(|idle| {
            let offset = u64::from(link.untouched.load(Ordering::Relaxed));
            let touched = link.stale_until.as_millis().saturating_sub(offset);
            now.as_millis() >= touched.saturating_add(idle)
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.links.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// The slot of `key`'s node.
    fn find(&self, hash: u64, key: &K) -> Option<usize> {
        self.table
            .find(hash, |n| n.key == *key)
            .map(|n| n.slot as usize)
    }

    /// The node whose links are at `slot`.
    fn node_mut(&mut self, slot: usize) -> Option<&mut Node<K, V>> {
        let hash = self.links[slot].hash;
        self.table.find_mut(hash, |n| n.slot as usize == slot)
    }

    /// A node's `(fresh_until, stale_until)`.
    fn times(&self, node: &Node<K, V>) -> (Timestamp, Timestamp) {
        if node.flags & WIDE == 0 {
            // Checked to fit when the node was made: no overflow.
            let fresh = node.created_at.as_millis() + u64::from(node.fresh_ms);
            (
                Timestamp::from_millis(fresh),
                Timestamp::from_millis(fresh + u64::from(node.stale_ms)),
            )
        } else {
            let link = &self.links[node.slot as usize];
            (link.fresh_until, link.stale_until)
        }
    }

    /// The entry a node holds, with its value cloned.
    fn entry(&self, node: &Node<K, V>, fresh: Timestamp, stale: Timestamp) -> Entry<V>
    where
        V: Clone,
    {
        let tags = if node.flags & TAGGED == 0 {
            Tags::none()
        } else {
            self.links[node.slot as usize].tags.clone()
        };
        Entry::from_parts(
            node.value.clone(),
            node.created_at,
            fresh,
            Some(stale),
            tags,
        )
    }

    /// Looks up under the shared lock; a hit counts as a read of the key.
    #[inline]
    pub(crate) fn read(&self, hash: u64, key: &K, now: Timestamp) -> Read<V>
    where
        V: Clone,
    {
        let Some(node) = self.table.find(hash, |n| n.key == *key) else {
            return Read::Miss;
        };
        let (fresh, stale) = self.times(node);
        if now >= stale {
            return Read::Expired;
        }
        if self.idle_ms.is_some() {
            let link = &self.links[node.slot as usize];
            if self.idle(link, now) {
                return Read::Expired;
            }
            link.untouched
                .fetch_min(Link::offset(link.stale_until, now), Ordering::Relaxed);
        }
        // A lost update between two readers only loses one count; a key already
        // at the top costs no write at all.
        let freq = node.freq.load(Ordering::Relaxed);
        if freq < MAX_FREQ {
            node.freq.store(freq + 1, Ordering::Relaxed);
        }
        Read::Hit(self.entry(node, fresh, stale))
    }

    /// Looks up without counting a read.
    pub(crate) fn peek(&self, hash: u64, key: &K, now: Timestamp) -> Option<Entry<V>>
    where
        V: Clone,
    {
        let node = self.table.find(hash, |n| n.key == *key)?;
        let (fresh, stale) = self.times(node);
        (now < stale && !self.idle(&self.links[node.slot as usize], now))
            .then(|| self.entry(node, fresh, stale))
    }

    /// Removes `key` if it is (still) expired.
    pub(crate) fn remove_if_expired(&mut self, hash: u64, key: &K, now: Timestamp) {
        if let Some(i) = self.find(hash, key)
            && self.dead(i, now)
        {
            self.discard(i, EvictionReason::Expired);
        }
    }

    /// Inserts or replaces, evicting first so the new entry fits. The caller has
    /// checked `weight` against the per-entry limit (at most the shard's bound).
    pub(crate) fn put(
        &mut self,
        hash: u64,
        key: K,
        entry: Entry<V>,
        weight: u64,
        now: Timestamp,
        spare: &Spare,
    ) {
        self.sketch.increment(hash);
        let (queue, freq, returning) = match self.find(hash, &key) {
            Some(i) => {
                // A replacement keeps its place and counts as a read.
                let (old, link) = self.detach(i);
                self.counters.updates += 1;
                let freq = old.map_or(0, |n| {
                    let freq = n.freq.into_inner();
                    if let Some(removed) = &mut self.removed {
                        removed.push((n.key, n.value, RemovalCause::Replaced));
                    }
                    freq
                });
                (link.queue, (freq + 1).min(MAX_FREQ), false)
            }
            None => {
                self.counters.inserts += 1;
                (Queue::Small, 0, self.note_return(hash))
            }
        };
        self.reclaim_heads(now);
        while self.len() >= self.quota {
            if spare.take() {
                self.quota += 1;
            } else if !self.evict_one(EvictionReason::Capacity, now) {
                break;
            }
        }
        while self.weight.saturating_add(weight) > self.max_weight {
            if !self.evict_one(EvictionReason::Weight, now) {
                break;
            }
        }
        let flags = if returning { RETURNING } else { 0 };
        self.attach(hash, key, entry, (weight, now), queue, (freq, flags));
        self.puts_since_sweep += 1;
        if self.puts_since_sweep >= self.len().max(MIN_SWEEP_INTERVAL) {
            self.purge_expired(now);
            self.release(spare);
        }
    }

    /// Returns drawn entry slots this shard no longer fills to the pool.
    pub(crate) fn release(&mut self, spare: &Spare) {
        let unused = self
            .quota
            .saturating_sub(self.len())
            .min(self.quota - self.owned);
        if unused > 0 {
            self.quota -= unused;
            spare.give(unused);
        }
    }

    pub(crate) fn remove(&mut self, hash: u64, key: &K) -> bool {
        match self.find(hash, key) {
            Some(i) => {
                self.discard(i, EvictionReason::Removed);
                true
            }
            None => false,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.counters.removed += self.links.len() as u64;
        self.links.clear();
        match &mut self.removed {
            Some(removed) => removed.extend(
                self.table
                    .drain()
                    .map(|n| (n.key, n.value, RemovalCause::Explicit)),
            ),
            None => self.table.clear(),
        }
        self.small = Fifo::EMPTY;
        self.main = Fifo::EMPTY;
        self.rejected.clear();
        self.displaced.clear();
        self.sketch.clear();
        self.weight = 0;
    }

    /// Every key held.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.table.iter().map(|n| &n.key)
    }

    /// Adds an entry at the tail of `queue`.
    fn attach(
        &mut self,
        hash: u64,
        key: K,
        entry: Entry<V>,
        (weight, now): (u64, Timestamp),
        queue: Queue,
        (freq, policy_flags): (u8, u8),
    ) {
        let slot = self.links.len();
        let created_at = entry.created_at();
        let (fresh_until, stale_until) = (entry.fresh_until(), entry.stale_until());
        let tags = entry.tags().clone();
        let (fresh_ms, stale_ms, mut flags) =
            match packed_times(created_at, fresh_until, stale_until) {
                Some((f, s)) => (f, s, policy_flags),
                None => (0, 0, WIDE | policy_flags),
            };
        if !tags.is_empty() {
            flags |= TAGGED;
        }
        self.weight = self.weight.saturating_add(weight);
        self.links.push(Link {
            prev: NIL,
            next: NIL,
            queue,
            weight,
            hash,
            fresh_until,
            stale_until,
            tags,
            untouched: AtomicU32::new(Link::offset(stale_until, now)),
        });
        let node = Node {
            key,
            value: entry.into_value(),
            created_at,
            fresh_ms,
            stale_ms,
            slot: slot as u32,
            freq: AtomicU8::new(freq),
            flags,
        };
        let links = &self.links;
        self.table
            .insert_unique(hash, node, |n| links[n.slot as usize].hash);
        self.push_back(slot, queue);
    }

    /// Drops slot `i` and counts why; returns its links.
    fn discard(&mut self, i: usize, reason: EvictionReason) -> Link {
        let (node, link) = self.detach(i);
        self.counters.count(reason);
        if let (Some(removed), Some(node)) = (&mut self.removed, node) {
            removed.push((node.key, node.value, reason.into()));
        }
        link
    }

    /// Takes slot `i` out of its list, its node out of the table, and its links
    /// out of the `Vec` (the last slot moves into its place).
    fn detach(&mut self, i: usize) -> (Option<Node<K, V>>, Link) {
        self.unlink(i);
        let hash = self.links[i].hash;
        let node = self
            .table
            .find_entry(hash, |n| n.slot as usize == i)
            .ok()
            .map(|e| e.remove().0);
        let link = self.links.swap_remove(i);
        self.weight = self.weight.saturating_sub(link.weight);
        if i < self.links.len() {
            // The former last slot is now `i`: repoint everything at it.
            let moved = self.links.len();
            let Link {
                prev,
                next,
                queue,
                hash,
                ..
            } = self.links[i];
            let list = self.list(queue);
            if prev == NIL {
                list.head = i as u32;
            }
            if next == NIL {
                list.tail = i as u32;
            }
            if prev != NIL {
                self.links[prev as usize].next = i as u32;
            }
            if next != NIL {
                self.links[next as usize].prev = i as u32;
            }
            if let Some(node) = self.table.find_mut(hash, |n| n.slot as usize == moved) {
                node.slot = i as u32;
            }
        }
        (node, link)
    }

    fn list(&mut self, queue: Queue) -> &mut Fifo {
        match queue {
            Queue::Small => &mut self.small,
            Queue::Main => &mut self.main,
        }
    }

    fn unlink(&mut self, i: usize) {
        let Link {
            prev,
            next,
            queue,
            weight,
            ..
        } = self.links[i];
        if prev != NIL {
            self.links[prev as usize].next = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
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
        let link = &mut self.links[i];
        link.prev = NIL;
        link.next = NIL;
    }

    fn push_back(&mut self, i: usize, queue: Queue) {
        let weight = self.links[i].weight;
        let list = self.list(queue);
        let tail = list.tail;
        list.tail = i as u32;
        if tail == NIL {
            list.head = i as u32;
        }
        list.len += 1;
        list.weight = list.weight.saturating_add(weight);
        if tail != NIL {
            self.links[tail as usize].next = i as u32;
        }
        let link = &mut self.links[i];
        link.queue = queue;
        link.prev = tail;
        link.next = NIL;
    }

    /// Checks the internal links and totals (tests only).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut seen = 0;
        for (queue, list) in [(Queue::Small, &self.small), (Queue::Main, &self.main)] {
            let (mut i, mut prev, mut len, mut weight) = (list.head, NIL, 0, 0u64);
            while i != NIL {
                let l = &self.links[i as usize];
                assert_eq!(l.queue, queue);
                assert_eq!(l.prev, prev);
                len += 1;
                weight += l.weight;
                prev = i;
                i = l.next;
            }
            assert_eq!(list.tail, prev);
            assert_eq!((list.len, list.weight), (len, weight));
            seen += len;
        }
        assert_eq!(seen, self.links.len());
        assert_eq!(self.table.len(), self.links.len());
        for node in &self.table {
            let link = &self.links[node.slot as usize];
            assert_eq!(self.find(link.hash, &node.key), Some(node.slot as usize));
            assert_eq!(self.times(node), (link.fresh_until, link.stale_until));
            assert_eq!(node.flags & TAGGED != 0, !link.tags.is_empty());
        }
        assert_eq!(
            self.weight,
            self.links.iter().map(|l| l.weight).sum::<u64>()
        );
    }
}

/// Picks a shard from a hash: the high bits, since the tables use the low ones
/// (and the top seven for their control bytes).
pub(crate) fn shard_index(hash: u64, mask: usize) -> usize {
    ((hash >> 32) as usize) & mask
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;
    use std::time::Duration;

    use super::*;

    static NO_SPARE: Spare = Spare(std::sync::atomic::AtomicUsize::new(0));

    /// Puts `k` (weight 1, a minute to live) and checks the shard's invariants.
    pub(super) fn put(s: &mut Shard<u32, u32>, h: &Hasher, k: u32, now: Timestamp) {
        let e = Entry::new(k, now, Duration::from_secs(60));
        s.put(h.hash_one(k), k, e, 1, now, &NO_SPARE);
        s.check();
    }

    #[test]
    fn the_idle_offset_fits_in_padding() {
        assert!(
            std::mem::size_of::<Link>() <= 56,
            "{}",
            std::mem::size_of::<Link>()
        );
    }

    #[test]
    fn links_stay_consistent_through_churn() {
        let h = Hasher::default();
        let now = Timestamp::from_millis(1_000);
        let mut s = Shard::<u32, u32>::new(50, 50, u64::MAX, Extras::default());
        for round in 0..20u32 {
            for k in 0..80 {
                put(&mut s, &h, (k * 7 + round) % 120, now);
                if k % 3 == 0 {
                    let key = k % 40;
                    assert!(!matches!(s.read(h.hash_one(key), &key, now), Read::Expired));
                }
                if k % 11 == 0 {
                    s.remove(h.hash_one(k), &k);
                    s.check();
                }
            }
            assert!(s.len() <= 50);
        }
        s.remove_where(|k, _| k % 2 == 0);
        s.check();
        assert!(s.keys().all(|k| k % 2 == 1));
        let later = now.saturating_add(Duration::from_secs(61));
        let n = s.len() as u64;
        assert_eq!(s.purge_expired(later), n);
        s.check();
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn packed_times_and_tags_read_back_exactly() {
        let h = Hasher::default();
        let now = Timestamp::from_millis(1_000_000);
        let day = Duration::from_secs(86_400);
        let tagged = Entry::new(1, now, Duration::from_millis(1_500))
            .with_tags(["t"])
            .expect("valid tag");
        let entries = [
            // Fits the deltas.
            Entry::new(1, now, Duration::from_millis(1_500)).with_stale_window(day),
            // Fresh for longer than u32 milliseconds.
            Entry::new(2, now, day * 60),
            // A stale window longer than u32 milliseconds.
            Entry::new(3, now, Duration::from_secs(1)).with_stale_window(day * 60),
            // Never expires.
            Entry::from_parts(Some(4), now, Timestamp::MAX, None, Tags::none()),
            // Made "after" it stops being fresh (clock skew between writers).
            Entry::from_parts(
                Some(5),
                now,
                Timestamp::from_millis(999_000),
                Some(Timestamp::from_millis(2_000_000)),
                Tags::none(),
            ),
            Entry::absent(now, Duration::from_secs(5)),
            tagged,
        ];
        let mut s = Shard::<u32, u32>::new(100, 100, u64::MAX, Extras::default());
        for (k, e) in entries.iter().enumerate() {
            let k = k as u32;
            s.put(h.hash_one(k), k, e.clone(), 1, now, &NO_SPARE);
            s.check();
        }
        for (k, e) in entries.iter().enumerate() {
            let k = k as u32;
            match s.read(h.hash_one(k), &k, now) {
                Read::Hit(got) => assert_eq!(&got, e, "key {k}"),
                _ => panic!("key {k} should be live"),
            }
        }
        // The expiry check uses the unpacked times: key 0 dies after its window.
        let later = now.saturating_add(day + Duration::from_secs(2));
        assert!(matches!(s.read(h.hash_one(0), &0, later), Read::Expired));
        assert!(matches!(s.read(h.hash_one(2), &2, later), Read::Hit(_)));
        // A predicate sees the whole entry, and the value is put back after it.
        assert_eq!(s.remove_where(|_, e| !e.tags().is_empty()), 1);
        assert_eq!(s.remove_where(|_, e| e.value() == Some(&99)), 0);
        s.check();
        match s.read(h.hash_one(1), &1, now) {
            Read::Hit(got) => assert_eq!(got.value(), Some(&2)),
            _ => panic!("key 1 should be live"),
        }
    }
}
