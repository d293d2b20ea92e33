//! One shard: S3-FIFO queues with adaptive TinyLFU admission, under
//! entry-count and weight bounds.
//!
//! Entries live in a dense `Vec` of slots (key, value, packed times, list
//! links, read counter, a 32-bit weight), and the shard's hash table holds
//! only slot numbers, four bytes each. A hit touches the table and one slot; a
//! writer reaches a slot's neighbours, its table entry and everything else
//! about it from the slot number alone. What few entries need (times that do
//! not fit the packed deltas, tags, a weight above `u32`) sits in a side table
//! of [`Extra`]s, and the time-to-idle offsets in a parallel `Vec` that exists
//! only when a time to idle is set. Two intrusive FIFO lists through the slots
//! order the entries:
//!
//! - **small** takes new keys (a twentieth of the shard at first; `climb.rs`
//!   sizes it by the hit rate). A key read at least once while it is there
//!   moves to *main* when it reaches the head; one that was not is a
//!   candidate for *main* (see `evict.rs`).
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

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use cache_core::{Entry, Tags, Timestamp};
use hashbrown::{HashMap, HashTable};

use crate::spare::Spare;

mod bulk;
mod evict;
mod fill;
mod ghost;
mod lists;
#[cfg(test)]
mod policy_tests;
mod read;
mod sketch;
mod times;

use crate::stats::{Counters, EvictionReason, RemovalCause};
use ghost::Ghost;
pub(crate) use read::Read;
use sketch::Sketch;

pub(crate) use crate::seed::Hasher;

/// No slot: the end of a list.
const NIL: u32 = u32::MAX;
/// Reads remembered per entry.
const MAX_FREQ: u8 = 3;
/// Reads while in *small* that earn a key its place in *main*.
pub(crate) const PROMOTE_AT: u8 = 1;
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

/// Slot flag: the entry's times do not fit the two deltas; read them from its
/// [`Extra`].
const WIDE: u8 = 1;
/// Slot flag: the entry has tags (kept in its [`Extra`]).
const TAGGED: u8 = 2;
/// Slot flag: the entry weighs more than a `u32` holds (kept in its [`Extra`]).
const HEAVY: u8 = 8;
/// The flags that give a slot an [`Extra`].
const HAS_EXTRA: u8 = WIDE | TAGGED | HEAVY;
/// Slot flag: the key lost an admission contest recently and came back (it was
/// in the `rejected` ghost when inserted): only such keys may contest again.
const RETURNING: u8 = 4;
/// Slot flag: the entry is in *main* (otherwise in *small*).
const IN_MAIN: u8 = 16;

/// One entry. The end of freshness is kept whole (a fresh hit compares it with
/// the time and reads nothing else), the creation and stale times as
/// millisecond deltas from it (exact whenever they fit in `u32`, about 49
/// days), and the key's hash is not kept (the shard hashes the key again when
/// eviction needs it), so a slot for `u64` keys and values is 56 bytes.
///
/// `repr(C)`, in this order: what a hit reads (key, fresh end, value, read
/// counter) comes first and together, so fewer slots spread a hit over two
/// cache lines; then the rest, with the two links in one aligned word. The
/// order also pads no more than rustc's own would for common key and value
/// types (`u64`, `String`, `Arc`, byte arrays: see the size tests).
#[repr(C)]
pub(crate) struct Slot<K, V> {
    key: K,
    /// Always exact, [`WIDE`] or not.
    fresh_until: Timestamp,
    value: Option<V>,
    /// Reads since the key was last passed over by eviction (saturating at
    /// [`MAX_FREQ`]); bumped under the read lock, hence atomic.
    freq: AtomicU8,
    /// [`WIDE`], [`TAGGED`], [`HEAVY`], [`RETURNING`], [`IN_MAIN`].
    flags: u8,
    /// `fresh_until - created_at`, in milliseconds (unless [`WIDE`]).
    age_ms: u32,
    prev: u32,
    next: u32,
    /// `stale_until - fresh_until`, in milliseconds (unless [`WIDE`]).
    stale_ms: u32,
    /// The entry's weight (unless [`HEAVY`]).
    weight: u32,
}

impl<K, V> Slot<K, V> {
    /// `(fresh_until, stale_until)` from the packed delta (not [`WIDE`]).
    #[inline]
    fn packed_times(&self) -> (Timestamp, Timestamp) {
        // Checked to fit when the slot was filled: no overflow.
        let stale = self.fresh_until.as_millis() + u64::from(self.stale_ms);
        (self.fresh_until, Timestamp::from_millis(stale))
    }

    /// `created_at` from the packed delta (not [`WIDE`]).
    fn packed_created_at(&self) -> Timestamp {
        Timestamp::from_millis(self.fresh_until.as_millis() - u64::from(self.age_ms))
    }

    fn queue(&self) -> Queue {
        if self.flags & IN_MAIN == 0 {
            Queue::Small
        } else {
            Queue::Main
        }
    }
}

/// What a slot holds outside it: kept for the rare entry with times too far
/// apart to pack, tags, or a weight above `u32::MAX`. Always complete.
#[derive(Debug, Clone)]
struct Extra {
    created_at: Timestamp,
    fresh_until: Timestamp,
    stale_until: Timestamp,
    tags: Tags,
    weight: u64,
}

/// `untouched` for a touch at `now`: how long before `stale_until` the entry
/// was stored or last read, in milliseconds (saturating: an entry touched more
/// than ~49 days before its stale end counts as touched 49 days before it).
fn idle_offset(stale_until: Timestamp, now: Timestamp) -> u32 {
    u32::try_from(stale_until.as_millis().saturating_sub(now.as_millis())).unwrap_or(u32::MAX)
}

/// An entry's times, weight and flags as a slot keeps them (see `Shard::pack`).
struct Packed {
    fresh_until: Timestamp,
    age_ms: u32,
    stale_ms: u32,
    weight: u32,
    flags: u8,
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

/// What a read looks at, on cache lines of its own: the shard sits right
/// after its lock word, which every reader writes, and fields sharing that
/// line would be fetched again from the last writer's core on every read.
#[repr(align(64))]
struct Hot<K, V> {
    /// Slot numbers, hashed by their keys.
    table: HashTable<u32>,
    slots: Vec<Slot<K, V>>,
    idle_ms: Option<u64>,
}

pub(crate) struct Shard<K, V> {
    /// The store's hasher: slots do not keep their keys' hashes.
    hasher: Hasher,
    hot: Hot<K, V>,
    /// By slot number, for slots flagged [`HAS_EXTRA`].
    extras: HashMap<u32, Extra, Hasher>,
    /// By slot number (with a time to idle only): how long before the stale
    /// end the entry was stored or last read (see [`idle_offset`]); bumped
    /// under the read lock, hence atomic.
    untouched: Vec<AtomicU32>,
    small: Fifo,
    main: Fifo,
    /// Candidates that lost to *main*'s victim.
    rejected: Ghost,
    /// *main*'s victims that lost their place to an admitted candidate.
    displaced: Ghost,
    /// How much more often than *main*'s victim a candidate must have been
    /// wanted to take its place; moved by regret (see `evict.rs`).
    bias: i8,
    /// Admit every returning candidate, whatever the sketch says (the rule
    /// a large store's miniature copies may choose: `shadow.rs`).
    pub(crate) free_admission: bool,
    sketch: Sketch,
    weight: u64,
    /// The shard's fair share of the store's entries: slots are allocated up
    /// to it in doublings, beyond it in small steps.
    share: usize,
    /// Entries this shard may hold: what it owns plus what it drew from the
    /// store's [`Spare`] pool.
    quota: usize,
    /// The part of `quota` that is the shard's own.
    owned: usize,
    max_weight: u64,
    small_entries: usize,
    small_weight: u64,
    /// The share `small_entries` and `small_weight` were set for, in per mille
    /// (0 before the first).
    small_permille: u32,
    /// Puts since the last full sweep for expired entries.
    puts_since_sweep: usize,
    /// Entries left by the last sweep: the next is due after as many puts (or
    /// as many as the shard holds, if fewer), so a sweep costs at most two
    /// slot checks per put however the shard grows (comparing with the
    /// current length alone, a growing shard whose entries all survived the
    /// last sweep never swept again).
    swept_len: usize,
    /// No entry can expire (or go idle) before this: the earliest end of any
    /// entry written since the last sweep or left by it. A due sweep is
    /// skipped before then.
    first_death: Timestamp,
    pub(crate) counters: Counters,
    /// What left the shard since the listener last heard (with a listener only).
    pub(crate) removed: Option<Vec<Removed<K, V>>>,
    /// Without a listener, the key and value a write evicted, replaced or removed,
    /// which the store drops after it releases the lock (two; any more are
    /// dropped in place). See [`Shard::spill`].
    spilled: Spilled<K, V>,
}

/// A key and value taken out of a shard, to be dropped outside the lock.
pub(crate) type Taken<K, V> = (K, Option<V>);

/// Entries a write took out, to be dropped outside the lock.
pub(crate) type Spilled<K, V> = [Option<Taken<K, V>>; 2];

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// A shard whose fair share of the store is `share` entries, `owned` of them
    /// its own (the rest it draws from the [`Spare`] pool when it needs them).
    pub(crate) fn new(
        share: usize,
        owned: usize,
        max_weight: u64,
        extras: Extras,
        hasher: Hasher,
    ) -> Self {
        let mut shard = Shard {
            hasher,
            hot: Hot {
                table: HashTable::new(),
                slots: Vec::new(),
                idle_ms: extras.idle_ms,
            },
            extras: HashMap::with_hasher(crate::seed::hasher()),
            untouched: Vec::new(),
            small: Fifo::EMPTY,
            main: Fifo::EMPTY,
            // Remembered for 4–8 shares of contests: a popular key with a long
            // reuse distance still counts as returning.
            rejected: Ghost::new(share * 4),
            displaced: Ghost::new(share / 2),
            bias: 0,
            free_admission: false,
            sketch: Sketch::new(share),
            weight: 0,
            share,
            quota: owned,
            owned,
            max_weight,
            small_entries: 0,
            small_weight: 0,
            small_permille: 0,
            puts_since_sweep: 0,
            swept_len: 0,
            first_death: Timestamp::MAX,
            counters: Counters::default(),
            removed: extras.notify.then(Vec::new),
            spilled: [None, None],
        };
        shard.set_small_permille(crate::climb::START_PERMILLE);
        shard
    }

    /// Whether slot `i` may no longer be served: past its stale end, or idle
    /// for longer than the time to idle.
    #[inline]
    fn dead(&self, i: usize, now: Timestamp) -> bool {
        if now < self.first_death {
            // Nothing in the shard can have expired or gone idle yet.
            return false;
        }
        let stale_until = self.times(i).1;
        now >= stale_until || self.idle(i, stale_until, now)
    }

    /// Whether slot `i` (whose stale end is `stale_until`) was not read for
    /// longer than the time to idle.
    fn idle(&self, i: usize, stale_until: Timestamp, now: Timestamp) -> bool {
        self.idle_end(i, stale_until).is_some_and(|end| now >= end)
    }

    /// When slot `i` (whose stale end is `stale_until`) goes idle if nobody
    /// reads it; `None` without a time to idle.
    fn idle_end(&self, i: usize, stale_until: Timestamp) -> Option<Timestamp> {
        self.hot.idle_ms.map(|idle| {
            let offset = u64::from(self.untouched[i].load(Ordering::Relaxed));
            let touched = stale_until.as_millis().saturating_sub(offset);
            Timestamp::from_millis(touched.saturating_add(idle))
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.hot.slots.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// The slot of `key`.
    #[inline]
    fn find(&self, hash: u64, key: &K) -> Option<usize> {
        self.find_slot(hash, key).map(|(i, _)| i)
    }

    /// The slot of `key`, with the slot itself (kept from the probe, so a hit
    /// indexes nothing twice).
    #[inline]
    fn find_slot(&self, hash: u64, key: &K) -> Option<(usize, &Slot<K, V>)> {
        let mut found = None;
        self.hot.table.find(hash, |&s| {
            let i = s as usize;
            match self.hot.slots.get(i) {
                Some(slot) if slot.key == *key => {
                    found = Some((i, slot));
                    true
                }
                _ => false,
            }
        });
        found
    }

    /// The hash of slot `i`'s key.
    fn hash_of(&self, i: usize) -> u64 {
        self.hasher.hash_one(&self.hot.slots[i].key)
    }

    #[inline]
    fn extra(&self, i: usize) -> Option<&Extra> {
        self.extras.get(&(i as u32))
    }

    /// Slot `i`'s `(fresh_until, stale_until)`.
    #[inline]
    fn times(&self, i: usize) -> (Timestamp, Timestamp) {
        self.slot_times(i, &self.hot.slots[i])
    }

    /// The times of `slot`, which is slot `i`.
    #[inline]
    fn slot_times(&self, i: usize, slot: &Slot<K, V>) -> (Timestamp, Timestamp) {
        if slot.flags & WIDE == 0 {
            slot.packed_times()
        } else {
            self.extra(i)
                .map_or((Timestamp::ZERO, Timestamp::ZERO), |e| {
                    (e.fresh_until, e.stale_until)
                })
        }
    }

    /// When the entry in `slot` (slot `i`) was created.
    #[inline]
    fn slot_created_at(&self, i: usize, slot: &Slot<K, V>) -> Timestamp {
        if slot.flags & WIDE == 0 {
            slot.packed_created_at()
        } else {
            self.extra(i).map_or(Timestamp::ZERO, |e| e.created_at)
        }
    }

    /// Slot `i`'s tags.
    #[inline]
    fn tags(&self, i: usize) -> Tags {
        self.slot_tags(i, &self.hot.slots[i])
    }

    /// The tags of `slot`, which is slot `i`.
    #[inline]
    fn slot_tags(&self, i: usize, slot: &Slot<K, V>) -> Tags {
        if slot.flags & TAGGED == 0 {
            Tags::none()
        } else {
            self.extra(i).map_or_else(Tags::none, |e| e.tags.clone())
        }
    }

    /// Slot `i`'s weight.
    #[inline]
    fn weight_of(&self, i: usize) -> u64 {
        let slot = &self.hot.slots[i];
        if slot.flags & HEAVY == 0 {
            u64::from(slot.weight)
        } else {
            self.extra(i).map_or(0, |e| e.weight)
        }
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
    /// Returns whether the key was new (for the store's climber, a miss).
    // Always inlined into the store's put (its only hot caller): left to
    // itself the compiler stopped inlining it once `discard` grew the spill,
    // and the call cost a replacement ~35 instructions (callgrind, `--ab
    // replace`).
    #[inline(always)]
    pub(crate) fn put(
        &mut self,
        hash: u64,
        key: K,
        entry: Entry<V>,
        (weight, now): (u64, Timestamp),
        spare: &Spare,
        mut borrow: impl FnMut() -> bool,
    ) -> bool {
        let found = self.find(hash, &key);
        if let Some(i) = found
            && let old_weight = self.weight_of(i)
            && (self.weight - old_weight).saturating_add(weight) <= self.max_weight
        {
            // Room for the new weight: replaced where it stands.
            self.counters.updates += 1;
            self.replace(i, key, entry, (old_weight, weight, now));
            self.count_put(now, spare);
            return false;
        }
        let (queue, freq, returning) = match found {
            Some(i) => {
                // A replacement keeps its place and counts as a read.
                let old = self.detach(i);
                self.counters.updates += 1;
                let queue = old.queue();
                let freq = old.freq.into_inner();
                self.hand_over(old.key, old.value, RemovalCause::Replaced);
                (queue, (freq + 1).min(MAX_FREQ), false)
            }
            None => {
                // A miss that led to this insert is a want of the key; a
                // replacement counts as a read instead (the sketch hears of it
                // when eviction passes over the entry).
                self.sketch.increment(hash);
                self.counters.inserts += 1;
                (Queue::Small, 0, self.note_return(hash))
            }
        };
        self.reclaim_heads(now);
        while self.len() >= self.quota {
            if spare.take() || borrow() {
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
        self.count_put(now, spare);
        found.is_none()
    }

    /// Sets *small*'s share of the shard, in per mille (see `climb.rs`).
    pub(crate) fn set_small_permille(&mut self, permille: u32) {
        let permille = permille.clamp(1, 1000);
        if permille == self.small_permille {
            return;
        }
        self.small_permille = permille;
        let permille = permille as usize;
        self.small_entries = (self.share * permille / 1000).max(1);
        self.small_weight = (self.max_weight / 1000)
            .saturating_mul(permille as u64)
            .max(1);
    }

    /// Counts a put towards the next full sweep for expired entries, and runs
    /// it when due.
    // Always inlined, for the same reason as `put` (a call per put otherwise).
    #[inline(always)]
    fn count_put(&mut self, now: Timestamp, spare: &Spare) {
        self.puts_since_sweep += 1;
        // After as many puts as the last sweep left entries, or as the shard
        // holds now if it has shrunk since (a cleared shard must soon give
        // back the pool's entry slots it drew: `release` below).
        let due = self.swept_len.min(self.len()).max(MIN_SWEEP_INTERVAL);
        if self.puts_since_sweep >= due {
            if now >= self.first_death {
                self.purge_expired(now);
            } else {
                // Nothing can have expired: a sweep would read every slot
                // (and push the hot ones out of the CPU's cache) for nothing.
                self.puts_since_sweep = 0;
                self.swept_len = self.len();
            }
            self.release(spare);
        }
    }

    /// Notes that an entry ending at `stale_until` was written at `now`.
    fn note_death(&mut self, stale_until: Timestamp, now: Timestamp) {
        let idle_end = self.hot.idle_ms.map_or(Timestamp::MAX, |idle| {
            Timestamp::from_millis(now.as_millis().saturating_add(idle))
        });
        self.first_death = self.first_death.min(stale_until).min(idle_end);
    }

    /// When slot `i` stops being servable: its stale end, or sooner if it is
    /// left unread for the time to idle (as [`dead`](Self::dead) judges).
    fn death(&self, i: usize) -> Timestamp {
        let stale = self.times(i).1;
        self.idle_end(i, stale).map_or(stale, |end| stale.min(end))
    }

    /// Holds fewer keys than it owns: it can lend an owned slot. It keeps one
    /// whatever it holds, so it can always store an entry (a put evicts
    /// within its shard, and an empty shard has nothing to evict).
    pub(crate) fn lends(&self) -> bool {
        self.lends_holding(self.len())
    }

    /// Whether the shard would lend if it held `len` keys.
    #[inline]
    pub(crate) fn lends_holding(&self, len: usize) -> bool {
        len < self.owned && self.owned > 1
    }

    /// Gives up one owned slot it does not fill (its quota shrinks with it);
    /// false if it fills every one.
    pub(crate) fn lend(&mut self) -> bool {
        // Below `owned`, `quota == owned`: drawn slots went back at the last
        // shrink, and a shard draws only once it holds its quota.
        if self.lends() && self.quota > self.len() {
            self.owned -= 1;
            self.quota -= 1;
            true
        } else {
            false
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

    /// Removes every entry. Without a listener, returns the slots for the
    /// store to drop once the lock is released (their destructors can take
    /// long, and readers wait for the lock); the shard grows its slots again
    /// as it refills.
    pub(crate) fn clear(&mut self) -> Vec<Slot<K, V>> {
        self.counters.removed += self.hot.slots.len() as u64;
        self.hot.table.clear();
        self.extras.clear();
        self.untouched.clear();
        let cleared = match &mut self.removed {
            Some(removed) => {
                removed.extend(
                    self.hot
                        .slots
                        .drain(..)
                        .map(|s| (s.key, s.value, RemovalCause::Explicit)),
                );
                Vec::new()
            }
            None => std::mem::take(&mut self.hot.slots),
        };
        self.small = Fifo::EMPTY;
        self.main = Fifo::EMPTY;
        self.rejected.clear();
        self.displaced.clear();
        self.sketch.clear();
        self.weight = 0;
        cleared
    }

    /// Every key held.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.hot.slots.iter().map(|s| &s.key)
    }

    /// Drops slot `i` and counts why.
    fn discard(&mut self, i: usize, reason: EvictionReason) {
        if let Some((key, value)) = self.take_out(i, reason) {
            self.spill(key, value);
        }
    }

    /// Removes slot `i` and counts why; its key and value go to the
    /// listener's buffer, or (without a listener) back to the caller.
    #[inline(always)]
    pub(super) fn take_out(&mut self, i: usize, reason: EvictionReason) -> Option<Taken<K, V>> {
        let slot = self.detach(i);
        self.counters.count(reason);
        match &mut self.removed {
            Some(removed) => {
                removed.push((slot.key, slot.value, reason.into()));
                None
            }
            None => Some((slot.key, slot.value)),
        }
    }

    /// A key and value that left the shard: to the listener's buffer, or
    /// (without a listener) to the [`spill`](Self::spill).
    #[inline]
    pub(super) fn hand_over(&mut self, key: K, value: Option<V>, cause: RemovalCause) {
        match &mut self.removed {
            Some(removed) => removed.push((key, value, cause)),
            None => self.spill(key, value),
        }
    }

    /// Whether a key or value has a destructor to run; when neither does,
    /// nothing is kept to be dropped outside the lock (decided at compile
    /// time).
    const HOLDS_DROPS: bool = std::mem::needs_drop::<K>() || std::mem::needs_drop::<V>();

    /// Keeps a key and value that left the shard for the store to drop after
    /// it releases the lock, so their destructors (a large buffer, the last
    /// reference to a shared tree) do not hold up the shard's readers.
    #[inline]
    fn spill(&mut self, key: K, value: Option<V>) {
        if !Self::HOLDS_DROPS {
            return;
        }
        if let Some(free) = self.spilled.iter_mut().find(|s| s.is_none()) {
            *free = Some((key, value));
        }
    }

    /// What [`spill`](Self::spill) kept, for the store to drop once the lock
    /// is released.
    #[inline]
    pub(crate) fn take_spilled(&mut self) -> Spilled<K, V> {
        if Self::HOLDS_DROPS {
            std::mem::take(&mut self.spilled)
        } else {
            [None, None]
        }
    }
}

/// Words in a 64-byte block: the sketch's and the ghosts' unit, one cache
/// line per key.
const LINE_WORDS: usize = 8;

/// The block of [`LINE_WORDS`] words at `start`, if `words` has it (one
/// bounds check for the whole block, so indexing it with `w & 7` needs none).
#[inline]
fn line(words: &[u64], start: usize) -> Option<&[u64; LINE_WORDS]> {
    words.get(start..start + LINE_WORDS)?.try_into().ok()
}

/// [`line`], to write in.
#[inline]
fn line_mut(words: &mut [u64], start: usize) -> Option<&mut [u64; LINE_WORDS]> {
    words.get_mut(start..start + LINE_WORDS)?.try_into().ok()
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

    static NO_SPARE: Spare = Spare::new(0, 0);

    /// A shard of `share` entries, all its own, without a weight bound; and
    /// its hasher.
    pub(super) fn shard(share: usize) -> (Shard<u32, u32>, Hasher) {
        let s = Shard::new(
            share,
            share,
            u64::MAX,
            Extras::default(),
            crate::seed::hasher(),
        );
        let h = s.hasher.clone();
        (s, h)
    }

    /// Puts `k` (weight 1, a minute to live) and checks the shard's invariants.
    pub(super) fn put(s: &mut Shard<u32, u32>, h: &Hasher, k: u32, now: Timestamp) {
        let e = Entry::new(k, now, Duration::from_secs(60));
        s.put(h.hash_one(k), k, e, (1, now), &NO_SPARE, || false);
        s.check();
    }

    #[test]
    fn a_slot_for_u64_keys_and_values_is_56_bytes() {
        let size = std::mem::size_of::<Slot<u64, u64>>();
        assert!(size <= 56, "{size}");
    }

    /// The slot's fixed order (`repr(C)`) costs no padding over what rustc
    /// would lay out itself: 34 bytes of times, links, weight, counter and
    /// flags beside the key and the value, rounded to their alignment.
    #[test]
    fn the_slot_order_pads_no_more_than_rustc_would() {
        use std::mem::size_of;
        use std::sync::Arc;
        assert!(size_of::<Slot<u64, [u8; 64]>>() <= 104);
        assert!(size_of::<Slot<String, String>>() <= 80);
        assert!(size_of::<Slot<Arc<str>, Arc<[u8]>>>() <= 64);
        assert!(size_of::<Slot<u32, u32>>() <= 48);
        assert!(size_of::<Slot<u64, ()>>() <= 40);
    }

    #[test]
    fn links_stay_consistent_through_churn() {
        let now = Timestamp::from_millis(1_000);
        let (mut s, h) = shard(50);
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
        let (mut s, h) = shard(100);
        // The last two weigh more than a `u32` holds.
        let heavy = u64::from(u32::MAX) + 7;
        for (k, e) in entries.iter().enumerate() {
            let k = k as u32;
            let weight = if k + 2 >= entries.len() as u32 {
                heavy
            } else {
                1
            };
            s.put(
                h.hash_one(k),
                k,
                e.clone(),
                (weight, now),
                &NO_SPARE,
                || false,
            );
            s.check();
        }
        assert_eq!(s.weight(), 5 + 2 * heavy);
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
        assert_eq!(s.remove_where(|_, e| !e.tags().is_empty()).0, 1);
        assert_eq!(s.remove_where(|_, e| e.value() == Some(&99)).0, 0);
        s.check();
        match s.read(h.hash_one(1), &1, now) {
            Read::Hit(got) => assert_eq!(got.value(), Some(&2)),
            _ => panic!("key 1 should be live"),
        }
        // Shortening freshness repacks the times, whichever way they were kept:
        // wide entries become packed and keep their stale end.
        let cap = now.saturating_add(Duration::from_millis(500));
        let shortened = s.cap_fresh(|_| cap);
        s.check();
        for k in 0..entries.len() as u32 - 1 {
            let Some(e) = s.peek(h.hash_one(k), &k, now) else {
                continue;
            };
            let want = &entries[k as usize];
            assert_eq!(e.fresh_until(), want.fresh_until().min(cap), "key {k}");
            assert_eq!(e.stale_until(), want.stale_until(), "key {k}");
        }
        assert_eq!(shortened, 5, "every entry fresh past the cap but key 4");
    }
}
