//! Fenced fills: a value read from somewhere slower than L1 (another tier, the
//! source) is not stored if its key was invalidated after the read began.
//!
//! A reader takes a [`Fence`] *before* it starts reading: the number of a
//! store-wide sequence, which taking it advances. Every invalidation —
//! [`remove_sync`](crate::MemoryStore::remove_sync), the bulk ones (`clear`,
//! `remove_where`, tags, prefixes), a replacing write
//! ([`put_fencing_sync`](crate::MemoryStore::put_fencing_sync)) and
//! [`fence_key`](crate::MemoryStore::fence_key) — records the sequence as it
//! is: per key in one of a shard's [`BUCKETS`] (picked by hash; a bucket
//! holds the last [`WAYS`] keys recorded in it exactly, and a key taking the
//! place of the oldest raises the bucket's floor to that one's number),
//! store-wide for a bulk one. Shortening freshness
//! (`cap_fresh`, a bus gap's policy) is no invalidation and records nothing.
//! The reader's fill
//! ([`put_since_sync`](crate::MemoryStore::put_since_sync)) checks, under the
//! shard's write lock, whether the key's record (or its bucket's floor) or
//! the bulk mark is above its fence, and stores nothing if so.
//!
//! Why that is enough: the sequence's accesses are sequentially consistent,
//! so an invalidation that reads it after a reader advanced it records a
//! number above that reader's fence. Its record is written under the same
//! shard lock the fill takes (or, for a bulk one, before it takes any shard's
//! lock), so either the fill comes first and the invalidation removes (or
//! replaces) what it stored, or the invalidation comes first and the fill sees
//! its record. An invalidation that read the sequence before the reader
//! advanced it came before the read began, and the read sees what it left.
//! A forgotten key (the floor) only costs a fill (a later miss), never a
//! stale value, and never counts as certain: only a key's own record does
//! ([`certainly_invalidated_since`](crate::MemoryStore::certainly_invalidated_since)).
//! Only readers write the sequence: an invalidation, a `set` among them,
//! reads it and stays off a contended cache line.

use std::hash::Hash;
use std::sync::atomic::Ordering;

use cache_core::{CacheError, CacheKey, Entry};

use crate::MemoryStore;
use crate::sync::{AtomicU64, fence_seq_cst};

/// Invalidation buckets per shard: keys are spread over them by hash.
pub(crate) const BUCKETS: usize = 16;
/// Keys a bucket remembers exactly. A fill is refused for a key it did not
/// see invalidated only when more than this many other keys of its bucket
/// were invalidated while it read. With 8 shards (2 cores), 128 buckets: 50
/// invalidations during a read (10,000 a second, 5 ms loads) refuse about
/// one fill in 20,000 (five in its bucket, Poisson mean 0.39), 300 about
/// one in eleven; one key per slot of 256 refused one in 60 and one in
/// three (two in its slot).
pub(crate) const WAYS: usize = 4;

/// A point in a store's invalidation history, taken with
/// [`MemoryStore::fence`](crate::MemoryStore::fence) before reading a value
/// elsewhere; a fill with it ([`put_since_sync`](crate::MemoryStore::put_since_sync))
/// stores nothing if the key was invalidated since.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{Clock, Entry, SystemClock};
/// use cache_store_memory::MemoryStore;
///
/// let l1: MemoryStore<u64, &str> = MemoryStore::builder().build()?;
/// let entry = |v| Entry::new(v, SystemClock.now(), Duration::from_secs(60));
/// let since = l1.fence();
/// // ... a slow read of key 1 begins, and meanwhile key 1 is invalidated:
/// l1.remove_sync(&1);
/// // The old value the read returns is not stored.
/// assert!(!l1.put_since_sync(1, entry("old"), since)?);
/// assert!(l1.get_sync(&1).is_none());
/// // A read that began after the invalidation fills as usual.
/// assert!(l1.put_since_sync(1, entry("new"), l1.fence())?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fence(pub(crate) u64);

/// The store-wide part: the sequence and the bulk mark.
#[derive(Debug, Default)]
pub(crate) struct Fences {
    seq: AtomicU64,
    bulk: AtomicU64,
}

impl Fences {
    /// A reader's fence: the sequence as it was, advanced past it.
    pub(crate) fn fence(&self) -> Fence {
        let fence = Fence(self.seq.fetch_add(1, Ordering::SeqCst));
        fence_seq_cst();
        fence
    }

    /// What an invalidation records: above every fence taken before it.
    pub(crate) fn now(&self) -> u64 {
        fence_seq_cst();
        self.seq.load(Ordering::SeqCst)
    }

    /// Records a bulk invalidation; called before it touches any shard.
    pub(crate) fn bulk(&self) {
        self.bulk.fetch_max(self.now(), Ordering::SeqCst);
    }

    /// Whether a bulk invalidation began after `since`.
    pub(crate) fn bulk_since(&self, since: Fence) -> bool {
        self.bulk.load(Ordering::SeqCst) > since.0
    }
}

/// One invalidation bucket: the last [`WAYS`] keys recorded in it (by hash)
/// with their numbers, and the highest number of a key it has forgotten.
#[derive(Debug, Default)]
struct Bucket {
    hash: [AtomicU64; WAYS],
    seq: [AtomicU64; WAYS],
    floor: AtomicU64,
}

/// What a shard's buckets say about a key since a fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Since {
    /// Not invalidated since.
    No,
    /// Perhaps: the bucket forgot a key invalidated since (other keys took
    /// its place), which may have been this one. A fill treats it as yes.
    Perhaps,
    /// This key was invalidated since.
    Yes,
}

/// A shard's per-key part: [`BUCKETS`] buckets picked by hash, each holding
/// [`WAYS`] keys exactly. A key taking the place of a bucket's oldest moves
/// that one's number to the bucket's floor, so a fill of any key of that
/// bucket fenced before it is refused (a lost fill, never a stale one),
/// while only a key's own record says it was certainly invalidated.
#[derive(Debug, Default)]
pub(crate) struct ShardFences([Bucket; BUCKETS]);

impl ShardFences {
    fn bucket(&self, hash: u64) -> &Bucket {
        // Remixed, then the top bits: the store's fast hash leaves runs of
        // integer keys clustered in its top bits for some seeds (300
        // consecutive keys crowded into a few buckets, refusing up to 57 of
        // 200 fills in the test where a uniform spread refuses ~18).
        let mixed = (hash ^ (hash >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        &self.0[(mixed >> 60) as usize & (BUCKETS - 1)]
    }

    /// Records invalidation `n` of the key hashed `hash` (under the shard's
    /// write lock, so a bucket's fields change together).
    pub(crate) fn record(&self, hash: u64, n: u64) {
        let bucket = self.bucket(hash);
        let (mut oldest, mut seq) = (0, u64::MAX);
        for way in 0..WAYS {
            let s = bucket.seq[way].load(Ordering::Relaxed);
            if bucket.hash[way].load(Ordering::Relaxed) == hash {
                bucket.seq[way].store(n.max(s), Ordering::Relaxed);
                return;
            }
            if s < seq {
                (oldest, seq) = (way, s);
            }
        }
        bucket.floor.fetch_max(seq, Ordering::Relaxed);
        bucket.hash[oldest].store(hash, Ordering::Relaxed);
        bucket.seq[oldest].store(n.max(seq), Ordering::Relaxed);
    }

    /// Whether a fill of the key hashed `hash` fenced at `since` must store
    /// nothing: the store was emptied, or this bucket says yes or perhaps
    /// (under the shard's lock).
    pub(crate) fn refuses(&self, store: &Fences, hash: u64, since: Fence) -> bool {
        store.bulk_since(since) || self.since(hash, since) != Since::No
    }

    /// Whether the key hashed `hash` was invalidated after `since` (under the
    /// shard's lock).
    pub(crate) fn since(&self, hash: u64, since: Fence) -> Since {
        let bucket = self.bucket(hash);
        for way in 0..WAYS {
            if bucket.hash[way].load(Ordering::Relaxed) == hash {
                if bucket.seq[way].load(Ordering::Relaxed) > since.0 {
                    return Since::Yes;
                }
                break;
            }
        }
        if bucket.floor.load(Ordering::Relaxed) > since.0 {
            Since::Perhaps
        } else {
            Since::No
        }
    }
}

/// How a put meets the fences (`fence.rs`).
#[derive(Clone, Copy)]
pub(crate) enum Fill {
    /// Neither checks nor records.
    Plain,
    /// Stores nothing if the key was invalidated after the fence.
    Since(Fence),
    /// Records itself as an invalidation of the key.
    Fencing,
}

impl<K, V> MemoryStore<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// The store's invalidation history as it is now: take it *before* reading
    /// a value from elsewhere, and fill with
    /// [`put_since_sync`](Self::put_since_sync), so a key invalidated while
    /// the read was under way is not filled with what it read. See [`Fence`].
    #[must_use]
    pub fn fence(&self) -> Fence {
        self.fences.fence()
    }

    /// Records an invalidation of `key` without removing anything: fills of it
    /// fenced before now store nothing. For a caller about to replace or
    /// re-check the key itself.
    pub fn fence_key(&self, key: &K) {
        let (hash, cell) = self.locate(key);
        let _shard = cell.lock.write();
        cell.fences.record(hash, self.fences.now());
    }

    /// Whether `key` (or a key its invalidation bucket forgot, or every key) was
    /// invalidated after `since`: what a caller that wrote the value elsewhere
    /// too checks, to take that copy back.
    pub fn invalidated_since(&self, key: &K, since: Fence) -> bool {
        let (hash, cell) = self.locate(key);
        let _shard = cell.lock.read();
        cell.fences.refuses(&self.fences, hash, since)
    }

    /// Like [`invalidated_since`](Self::invalidated_since), but only when the
    /// store is sure: `key` itself was invalidated after `since` (removed,
    /// replaced, [`fence_key`](Self::fence_key)), not merely a key it lost
    /// track of, nor the whole store emptied (`clear`, `remove_where`, which
    /// say nothing about one key). What a caller about to undo a write
    /// elsewhere (and tell other instances) asks, so an uncertain record
    /// costs a fill, never a fleet-wide invalidation.
    pub fn certainly_invalidated_since(&self, key: &K, since: Fence) -> bool {
        let (hash, cell) = self.locate(key);
        let _shard = cell.lock.read();
        cell.fences.since(hash, since) == Since::Yes
    }

    /// [`put_sync`](Self::put_sync) for a value read elsewhere after `since`
    /// was taken: stores nothing, and returns `Ok(false)`, when the key was
    /// invalidated after `since` (the value may predate that invalidation).
    /// The check and the store are one step under the shard's lock.
    pub fn put_since_sync(&self, key: K, entry: Entry<V>, since: Fence) -> Result<bool, CacheError>
    where
        K: CacheKey,
    {
        let weight = self.check(&key, &entry)?;
        Ok(self.insert_at(key, entry, weight, self.recent(), Fill::Since(since)))
    }

    /// [`put_sync`](Self::put_sync) for a write that replaces what the key
    /// held (a `set`): also recorded like an invalidation, so a fill fenced
    /// before it ([`put_since_sync`](Self::put_since_sync), a read begun
    /// earlier) does not put the older value back over it.
    pub fn put_fencing_sync(&self, key: K, entry: Entry<V>) -> Result<(), CacheError>
    where
        K: CacheKey,
    {
        let weight = self.check(&key, &entry)?;
        self.insert_at(key, entry, weight, self.recent(), Fill::Fencing);
        Ok(())
    }

    /// [`put_each_sync`](Self::put_each_sync) with the fence of
    /// [`put_since_sync`](Self::put_since_sync): an entry whose key was
    /// invalidated after `since` is skipped like one that fails the checks.
    pub fn put_each_since_sync(
        &self,
        entries: impl IntoIterator<Item = (K, Entry<V>)>,
        since: Fence,
    ) -> usize
    where
        K: CacheKey,
    {
        let now = self.clock.now();
        let mut stored = 0;
        for (key, entry) in entries {
            if let Ok(weight) = self.check(&key, &entry)
                && self.insert_at(key, entry, weight, now, Fill::Since(since))
            {
                stored += 1;
            }
        }
        stored
    }
}
