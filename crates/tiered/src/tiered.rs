//! [`TieredStore`]: the handle, its shared state and counters, and what it
//! tells about itself. The protocol is in `protocol.rs`, L2 calls in `guard.rs`,
//! writes and the recovery worker in `replay.rs`, the bus listener in
//! `listener.rs`, the builder in `builder.rs`.

use std::hash::Hash;
use std::sync::Arc;

use cache_breaker::CircuitBreaker;
use cache_core::{CacheError, CacheKey, Codec, DecodeKey, Entry, Postcard};
use cache_store_memory::{Fence, MemoryStore};
use cache_store_redis::{Action, BusStatus, InvalidationBus, RedisStore};
use parking_lot::Mutex;

use crate::config::{FailMode, GapPolicy};
use crate::guard::{L2Op, OncePerSecond};
use crate::meters::{Count, Meters};
use crate::recovery::RecoveryQueue;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Counters of a [`TieredStore`] since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TieredStats {
    /// Reads answered by L1 with a fresh entry.
    pub l1_hits: u64,
    /// Reads answered by L2 (and backfilled into L1).
    pub l2_hits: u64,
    /// Reads that found nothing usable in either tier.
    pub misses: u64,
    /// L2 calls that failed with a backend fault (including timeouts).
    pub l2_errors: u64,
    /// Of those, timeouts.
    pub l2_timeouts: u64,
    /// L2 calls skipped because the breaker was open.
    pub l2_rejected: u64,
    /// L2 calls Redis refused (`OOM`, `WRONGTYPE`, an ACL denial, …): it was
    /// alive, so the breaker did not count them.
    pub l2_refused: u64,
    /// Faults absorbed by fail-open (reads degraded to a miss, writes not thrown).
    pub fail_open: u64,
    /// Invalidation messages from other instances applied to L1.
    pub bus_messages: u64,
    /// Invalidations read after the bus reconnected that were published while it
    /// was away (replayed, not lost).
    pub bus_replayed: u64,
    /// Times the bus connection was re-established after it was lost.
    pub bus_reconnects: u64,
    /// Gaps on the bus: history really lost, handled by the [`GapPolicy`].
    pub bus_gaps: u64,
    /// Bus messages dropped unread (over the size limit, or foreign).
    pub bus_dropped: u64,
    /// Values read from L2 that were corrupt or not strings (each deleted).
    pub l2_corrupt: u64,
    /// Values read from L2 over the read limit (each deleted, never read whole).
    pub l2_oversized: u64,
    /// Publishes that failed (queued for replay).
    pub publish_errors: u64,
    /// Writes and invalidations waiting in the recovery queue for L2.
    pub recovery_pending: u64,
    /// Operations the recovery queue applied to L2 (and published) after an outage.
    pub recovery_replayed: u64,
    /// Operations dropped from a full recovery queue (or refused by L2 on replay).
    pub recovery_dropped: u64,
    /// Entries written through the write API (`put`, `put_many`).
    pub writes: u64,
    /// Invalidations through the write API (`remove`, `remove_many`, tags, prefixes).
    pub invalidations: u64,
    /// Values read from L2 or loaded that were not kept in L1 (and, for a
    /// load, were taken back from L2) because their key was invalidated while
    /// they were being read: they may predate the invalidation. Also counts
    /// loads' L2 writes taken back because another instance's invalidation
    /// of the key was heard after the write returned while L2 still held it.
    pub fenced: u64,
}

/// Rate limits of the log warnings.
#[derive(Default)]
pub(crate) struct LogLimits {
    /// L2 fault warnings.
    pub(crate) fault_logged: OncePerSecond,
    /// Queue overflow warnings.
    pub(crate) drop_logged: OncePerSecond,
}

pub(crate) struct L2<C> {
    pub(crate) store: RedisStore<C>,
    pub(crate) breaker: Arc<CircuitBreaker>,
    pub(crate) bus: Option<InvalidationBus<C>>,
}

pub(crate) struct Inner<K, V, C> {
    pub(crate) name: Arc<str>,
    pub(crate) op_durations: [metrics::Histogram; L2Op::COUNT],
    pub(crate) l1: MemoryStore<K, V>,
    pub(crate) l2: Option<L2<C>>,
    pub(crate) mode: FailMode,
    pub(crate) meters: Arc<Meters>,
    pub(crate) logs: LogLimits,
    pub(crate) listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) bus_status: Mutex<Option<BusStatus>>,
    pub(crate) gap_policy: GapPolicy,
    pub(crate) recovery: Mutex<RecoveryQueue<K, V>>,
    /// Wakes the recovery worker early when a write joins the queue.
    pub(crate) recovery_wake: Arc<tokio::sync::Notify>,
    /// The namespace's clear epoch as last seen (Unix ms): entries created
    /// before it are cleared; see `clear.rs`.
    pub(crate) epoch: std::sync::atomic::AtomicU64,
    /// Background L2 writes in flight; set closing by `shutdown`.
    pub(crate) background: Arc<crate::shutdown::Background>,
    /// Loads' L2 writes, remembered for taking back; see `written.rs`.
    pub(crate) written: crate::written::Written<K>,
}

impl<K, V, C> Drop for Inner<K, V, C> {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get_mut().take() {
            task.abort();
        }
    }
}

/// L1 + optional L2 as one store; see the [crate docs](crate). Cheap to clone.
pub struct TieredStore<K, V, C = Postcard> {
    pub(crate) inner: Arc<Inner<K, V, C>>,
}

impl<K, V, C> Clone for TieredStore<K, V, C> {
    fn clone(&self) -> Self {
        TieredStore {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, C> std::fmt::Debug for TieredStore<K, V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("l2", &self.inner.l2.is_some())
            .field("mode", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// The L1.
    #[must_use]
    pub fn l1(&self) -> &MemoryStore<K, V> {
        &self.inner.l1
    }

    /// The L2, if configured.
    #[must_use]
    pub fn l2(&self) -> Option<&RedisStore<C>> {
        self.inner.l2.as_ref().map(|l2| &l2.store)
    }

    /// The breaker guarding L2, if there is one.
    #[must_use]
    pub fn breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.inner.l2.as_ref().map(|l2| &l2.breaker)
    }

    /// The fail mode.
    #[must_use]
    pub fn fail_mode(&self) -> FailMode {
        self.inner.mode
    }

    /// Whether the bus listener is currently connected (`false` without a bus).
    #[must_use]
    pub fn bus_connected(&self) -> bool {
        self.inner
            .bus_status
            .lock()
            .as_ref()
            .is_some_and(BusStatus::is_connected)
    }

    /// Whether this store publishes and listens on an invalidation bus.
    #[must_use]
    pub fn has_bus(&self) -> bool {
        self.inner.l2.as_ref().is_some_and(|l2| l2.bus.is_some())
    }

    /// The gap policy in force.
    #[must_use]
    pub fn gap_policy(&self) -> GapPolicy {
        self.inner.gap_policy
    }

    /// Writes and invalidations waiting in the recovery queue for L2.
    #[must_use]
    pub fn recovery_pending(&self) -> usize {
        self.inner.recovery.lock().len()
    }

    /// Counters since the store was built.
    #[must_use]
    pub fn stats(&self) -> TieredStats {
        let m = &self.inner.meters;
        let bus = self
            .inner
            .bus_status
            .lock()
            .as_ref()
            .map(BusStatus::stats)
            .unwrap_or_default();
        let redis = self.l2().map(RedisStore::stats).unwrap_or_default();
        TieredStats {
            l1_hits: m.get(Count::TierL1Hit),
            l2_hits: m.get(Count::TierL2Hit),
            misses: m.get(Count::TierMiss),
            l2_errors: m.get(Count::L2Error),
            l2_timeouts: m.get(Count::L2Timeout),
            l2_rejected: m.get(Count::L2Rejected),
            l2_refused: m.get(Count::L2Refused),
            fail_open: m.get(Count::FailOpen),
            bus_messages: m.get(Count::BusMessage),
            bus_replayed: bus.replayed,
            bus_reconnects: bus.connects.saturating_sub(1),
            bus_gaps: m.get(Count::BusGap),
            bus_dropped: bus.dropped,
            l2_corrupt: redis.decode_errors,
            l2_oversized: redis.oversized_reads,
            publish_errors: m.get(Count::PublishError),
            recovery_pending: self.recovery_pending() as u64,
            recovery_replayed: m.get(Count::RecoveryReplayed),
            recovery_dropped: m.get(Count::RecoveryDropped),
            writes: m.get(Count::Write),
            invalidations: m.get(Count::Invalidation),
            fenced: m.get(Count::Fenced),
        }
    }

    /// The counters this store records into; a layer composing it (the facade)
    /// records its own events into the same object, so one snapshot holds both.
    #[must_use]
    pub fn meters(&self) -> &Arc<Meters> {
        &self.inner.meters
    }

    /// Writes L1 only (no publishing), as a write that replaces what the key
    /// held: a read of it begun earlier does not backfill its older value over
    /// this one ([`MemoryStore::put_fencing_sync`]). When L1 refuses the entry
    /// (a key or weight over its limits), whatever L1 held for the key is
    /// dropped, so an older value is never served in place of the one just
    /// written to L2.
    pub fn fill_l1(&self, key: K, entry: Entry<V>) -> Result<(), CacheError> {
        let l1 = &self.inner.l1;
        match l1.put_fencing_sync(key.clone(), entry) {
            Ok(()) => Ok(()),
            Err(e) => {
                l1.remove_sync(&key);
                Err(e)
            }
        }
    }

    /// [`fill_l1`](Self::fill_l1) for a value read elsewhere (L2, the source)
    /// after `since` was taken ([`MemoryStore::fence`]): `Ok(false)`, and
    /// nothing stored, when the key was invalidated since — the value may
    /// predate that invalidation, and storing it would keep it past it.
    pub fn fill_l1_since(&self, key: K, entry: Entry<V>, since: Fence) -> Result<bool, CacheError> {
        let l1 = &self.inner.l1;
        match l1.put_since_sync(key.clone(), entry, since) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.inner.meters.record(Count::Fenced);
                Ok(false)
            }
            Err(e) => {
                l1.remove_sync(&key);
                Err(e)
            }
        }
    }

    pub(crate) fn keys_action(keys: &[K]) -> Action {
        Action::Keys(keys.iter().map(CacheKey::to_key_string).collect())
    }
}
