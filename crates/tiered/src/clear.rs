//! Clearing the whole namespace in O(1): a clear epoch instead of a scan.
//!
//! [`TieredStore::clear`] takes the time now as the namespace's clear epoch:
//! this L1 drops what was created before it at once, and one script raises the
//! epoch in Redis and publishes it on the bus. From then on an entry created
//! before the epoch is a miss wherever it is read — L2 reads, batch reads,
//! lease waits, backfills — and other instances drop their older L1 copies when
//! the message arrives. Cleared entries stay in Redis until their TTL ends or a
//! load overwrites them: nothing is scanned.
//!
//! Each instance keeps the epoch it last saw: it reads it from Redis when it
//! starts and after every bus gap, and raises it on every clear message (an
//! epoch never goes back). During an outage the clear waits in the recovery
//! queue, where it supersedes everything queued before it, and is replayed with
//! the time it was made.
//!
//! **Clocks.** The epoch and entries' creation times are wall-clock times of
//! different machines. An instance whose clock is ahead of the clearing one by
//! `d` keeps entries it wrote in the `d` before the clear; one whose clock is
//! behind sees its own fresh writes for up to `d` after the clear as cleared
//! (one extra load each). Keep clocks synchronised (NTP keeps them within a few
//! milliseconds).

use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cache_core::{CacheError, CacheKey, Codec, DecodeKey, Entry, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::meters::Count;
use crate::recovery::Pending;
use crate::replay::RECOVERY_BACKOFF;
use crate::tiered::{Inner, TieredStore};

/// Raises `inner`'s epoch to `at` and drops the L1 entries created before it;
/// returns whether the epoch rose.
pub(crate) fn apply_clear<K, V, C>(inner: &Inner<K, V, C>, at: Timestamp) -> bool
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    let ms = at.as_millis();
    let before = inner.epoch.fetch_max(ms, Ordering::AcqRel);
    if before >= ms {
        return false;
    }
    inner.l1.remove_where(|_, e| e.created_at() < at);
    true
}

/// Reads the namespace's epoch from Redis until it gets an answer (or the store
/// is gone) and applies it.
pub(crate) async fn sync_epoch<K, V, C>(weak: Weak<Inner<K, V, C>>)
where
    K: Hash + Eq + Clone,
    V: Clone,
    C: Codec + Clone,
{
    let mut backoff = RECOVERY_BACKOFF.0;
    loop {
        let read = {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let Some(l2) = &inner.l2 else {
                return;
            };
            let store = l2.store.clone();
            drop(inner);
            store.clear_epoch().await
        };
        match read {
            Ok(at) => {
                if let Some(inner) = weak.upgrade() {
                    apply_clear(&inner, at);
                }
                return;
            }
            // Refused (an ACL without access to the epoch key): asking again
            // will not help; the bus's messages still carry clears.
            Err(e) if !e.is_backend_fault() => return,
            Err(_) => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECOVERY_BACKOFF.1);
    }
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Empties the whole namespace on every instance in one round trip: this L1
    /// at once, L2 and other instances' L1 through the clear epoch (see the
    /// module docs of `clear.rs`, summarised in the crate docs). Entries created
    /// from now on are unaffected. During an outage the clear is queued and
    /// replayed; fail-closed, the fault is returned all the same.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cache_core::{Clock, Entry, Store, SystemClock};
    /// # use cache_store_memory::MemoryStore;
    /// # use cache_tiered::TieredStore;
    /// # tokio::runtime::Runtime::new()?.block_on(async move {
    /// let l1 = MemoryStore::<u64, String>::builder().max_entries(100).build()?;
    /// let store = TieredStore::builder(l1).build()?;
    /// let entry = Entry::new("ada".to_owned(), SystemClock.now(), Duration::from_secs(60));
    /// store.put(1, entry).await?;
    /// store.clear().await?;
    /// assert!(store.get(&1).await?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).map_err(|e| e.to_string())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn clear(&self) -> Result<(), CacheError> {
        self.inner.meters.record(Count::Invalidation);
        // Strictly after everything already created, so no entry made in the
        // same millisecond before the clear survives it (one made in the same
        // millisecond after it costs a load).
        let at = self
            .inner
            .l1
            .clock()
            .now()
            .saturating_add(Duration::from_millis(1));
        self.inner.epoch.fetch_max(at.as_millis(), Ordering::AcqRel);
        self.inner.l1.clear();
        self.write_l2(Pending::Clear(at)).await.map(|_| ())
    }

    /// The clear epoch this instance knows: entries created before it are
    /// cleared ([`Timestamp::ZERO`] if the namespace was never cleared).
    #[must_use]
    pub fn clear_epoch(&self) -> Timestamp {
        Timestamp::from_millis(self.inner.epoch.load(Ordering::Acquire))
    }

    /// Whether `entry` was created before the clear epoch.
    pub(crate) fn is_cleared(&self, entry: &Entry<V>) -> bool {
        entry.created_at().as_millis() < self.inner.epoch.load(Ordering::Acquire)
    }

    /// Starts reading the epoch from Redis in the background.
    pub(crate) fn spawn_epoch_sync(&self) {
        if self.inner.l2.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sync_epoch(Arc::downgrade(&self.inner)));
        }
    }
}
