//! The tier protocol: the one read past a caller's own L1 check and the one
//! write-back of a loaded entry, used by every read-through path of the facade
//! (`get`, `get_or_load`, `memoize`, refresh, batches) and by this crate's own
//! [`Store`](cache_core::Store) implementation.

use std::hash::Hash;

use cache_core::{CacheError, CacheKey, Codec, DecodeKey, Entry, Store};
use cache_store_memory::Fence;
use cache_store_redis::LoadLease;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{FailMode, Route};
use crate::guard::L2Op;
use crate::meters::Count;
use crate::recovery::Pending;
use crate::tiered::TieredStore;
use crate::written::Shape;

/// Which tier answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The in-process L1.
    L1,
    /// Redis; the entry was backfilled into L1.
    L2,
}

/// What the tiers hold for a key; see [`TieredStore::read`].
#[derive(Debug)]
pub enum TierRead<V> {
    /// A fresh entry, and the tier it came from.
    Fresh(Entry<V>, Tier),
    /// Nothing fresh.
    Missing {
        /// The longest-lived stale entry seen (the caller's, L1's or L2's), for
        /// stale-on-error.
        stale: Option<Entry<V>>,
        /// The L2 fault, when the cache is fail-closed (fail-open absorbs it).
        fault: Option<CacheError>,
    },
}

/// The one stale-selection rule: `candidate` replaces `current` only if it can
/// be served (as stale) strictly longer.
#[must_use]
pub fn longer_lived<V>(current: Option<Entry<V>>, candidate: Entry<V>) -> Option<Entry<V>> {
    match current {
        Some(c) if c.stale_until() >= candidate.stale_until() => Some(c),
        _ => Some(candidate),
    }
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Reads `key` past a caller's own L1 check: L1 again (a load that just
    /// finished may have filled it), then [`read_l2`](Self::read_l2). Only
    /// entries `usable` accepts count (a typed reader skips entries of another
    /// shape). When nothing is fresh, the longest-lived stale entry — starting
    /// from `stale`, the caller's — comes back for stale-on-error.
    ///
    /// Counted in [`TieredStats`](crate::TieredStats): `l1_hits`, `l2_hits`
    /// (fresh only), `misses`.
    pub async fn read(
        &self,
        key: &K,
        stale: Option<Entry<V>>,
        usable: impl Fn(&Entry<V>) -> bool,
    ) -> TierRead<V> {
        self.read_routed(key, stale, usable, Route::ALL).await
    }

    /// [`read`](Self::read) for one call's [`Route`]: L1 only if it reads L1,
    /// L2 only if it reads L2 (backfilling L1 only if it writes L1), an L2
    /// fault treated by the route's fail mode.
    pub async fn read_routed(
        &self,
        key: &K,
        stale: Option<Entry<V>>,
        usable: impl Fn(&Entry<V>) -> bool,
        route: Route,
    ) -> TierRead<V> {
        let inner = &self.inner;
        let mut stale = stale.filter(&usable);
        if route.read_l1
            && let Some(e) = inner.l1.get_sync(key).filter(&usable)
        {
            if e.is_fresh(inner.l1.clock().recent()) {
                inner.meters.record(Count::TierL1Hit);
                return TierRead::Fresh(e, Tier::L1);
            }
            stale = longer_lived(stale, e);
        }
        if !route.read_l2 {
            inner.meters.record(Count::TierMiss);
            return TierRead::Missing { stale, fault: None };
        }
        self.read_l2_routed(key, stale, usable, route).await
    }

    /// The L2 half of [`read`](Self::read), for a caller that has just looked
    /// in L1 itself and joins no flight (`Cache::get`): L2 through the breaker,
    /// a fresh hit backfilled into L1 (capped by L1's maximum TTL), else the
    /// longest-lived stale entry (starting from `stale`) and, fail-closed, the
    /// fault.
    pub async fn read_l2(
        &self,
        key: &K,
        stale: Option<Entry<V>>,
        usable: impl Fn(&Entry<V>) -> bool,
    ) -> TierRead<V> {
        self.read_l2_routed(key, stale, usable, Route::ALL).await
    }

    async fn read_l2_routed(
        &self,
        key: &K,
        stale: Option<Entry<V>>,
        usable: impl Fn(&Entry<V>) -> bool,
        route: Route,
    ) -> TierRead<V> {
        let inner = &self.inner;
        let counters = &inner.meters;
        let mut stale = stale;
        // Before the read: a backfill of a key invalidated while the read was
        // under way is dropped (what came back may predate the invalidation).
        let since = inner.l1.fence();
        let fault = match self
            .guarded_as(route.mode(inner.mode), L2Op::Get, |l2| async move {
                Store::<K, V>::get(l2, key).await
            })
            .await
        {
            Ok(found) => {
                if let Some(e) = found.flatten().filter(|e| usable(e) && !self.is_cleared(e)) {
                    if e.is_fresh(inner.l1.clock().recent()) {
                        counters.record(Count::TierL2Hit);
                        // A refused backfill (too heavy for L1) costs a later L2 read.
                        if route.write_l1 {
                            let _ = self.fill_l1_since(key.clone(), e.clone(), since);
                        }
                        return TierRead::Fresh(e, Tier::L2);
                    }
                    stale = longer_lived(stale, e);
                }
                None
            }
            Err(e) => Some(e),
        };
        counters.record(Count::TierMiss);
        TierRead::Missing { stale, fault }
    }

    /// [`read_l2`](Self::read_l2) for several keys in one round trip (`MGET`,
    /// split per slot in a cluster): each key's entry as L2 holds it (fresh or
    /// stale; the caller judges), fresh ones backfilled into L1 at once.
    /// Fail-open: a fault reads as nothing found.
    pub async fn read_many_l2(&self, keys: &[K]) -> Result<Vec<Option<Entry<V>>>, CacheError> {
        self.read_many_l2_routed(keys, Route::ALL).await
    }

    /// [`read_many_l2`](Self::read_many_l2) for one call's [`Route`]: nothing
    /// read unless it reads L2, fresh entries backfilled only if it writes L1,
    /// a fault treated by its fail mode.
    pub async fn read_many_l2_routed(
        &self,
        keys: &[K],
        route: Route,
    ) -> Result<Vec<Option<Entry<V>>>, CacheError> {
        let inner = &self.inner;
        if !route.read_l2 {
            inner.meters.add(Count::TierMiss, keys.len() as u64);
            return Ok(vec![None; keys.len()]);
        }
        let since = inner.l1.fence();
        let found = self
            .guarded_as(route.mode(inner.mode), L2Op::GetMany, |l2| async move {
                Store::<K, V>::get_many(l2, keys).await
            })
            .await?
            .map_or_else(
                || vec![None; keys.len()],
                |found| {
                    found
                        .into_iter()
                        .map(|e| e.filter(|e| !self.is_cleared(e)))
                        .collect()
                },
            );
        let now = inner.l1.clock().recent();
        let fresh: Vec<(K, Entry<V>)> = keys
            .iter()
            .zip(&found)
            .filter_map(|(k, e)| {
                e.as_ref()
                    .filter(|e| e.is_fresh(now))
                    .map(|e| (k.clone(), e.clone()))
            })
            .collect();
        let hits = fresh.len() as u64;
        if route.write_l1 {
            let offered = fresh.len();
            if inner.l1.put_each_since_sync(fresh, since) < offered {
                // Skipped: fenced, or over L1's limits; count the former.
                let fenced = keys.iter().zip(&found).filter(|(k, e)| {
                    e.as_ref().is_some_and(|e| e.is_fresh(now))
                        && inner.l1.invalidated_since(k, since)
                });
                inner.meters.add(Count::Fenced, fenced.count() as u64);
            }
        }
        inner.meters.add(Count::TierL2Hit, hits);
        inner.meters.add(Count::TierMiss, keys.len() as u64 - hits);
        Ok(found)
    }

    /// Writes an entry just loaded from the source, without publishing (no other
    /// instance can hold a newer copy of it). `since` is the L1's
    /// [`fence`](cache_store_memory::MemoryStore::fence) taken before the load
    /// began: if the key was invalidated since (here, or on another instance
    /// through the bus), the loaded value may predate that invalidation and is
    /// kept nowhere; if the invalidation arrives while L2 is being written, the
    /// L2 copy is taken back (removed and published like an invalidation), so
    /// no instance keeps it.
    ///
    /// Fail-open: L1 now, L2 in a background task (a slow Redis does not delay
    /// the caller a second time; its faults are counted and absorbed); the
    /// result is L1's. Fail-closed: L2, then L1, both before returning; an L2
    /// fault is returned (L1 still holds the entry).
    pub async fn write_back(
        &self,
        key: K,
        entry: Entry<V>,
        since: Fence,
    ) -> Result<(), CacheError> {
        self.write_back_leased(key, Some(entry), None, since).await
    }

    /// [`write_back`](Self::write_back) for a load done under a fleet lease
    /// ([`try_lease`](Self::try_lease)): the lease is given back once L2 holds
    /// the entry (or at once, when there is nothing to write), so instances
    /// waiting for this load find the value as soon as the lease is gone.
    pub async fn write_back_leased(
        &self,
        key: K,
        entry: Option<Entry<V>>,
        lease: Option<LoadLease>,
        since: Fence,
    ) -> Result<(), CacheError> {
        self.write_back_routed(key, entry, lease, Route::ALL, since)
            .await
    }

    /// [`write_back_leased`](Self::write_back_leased) for one call's [`Route`]:
    /// L1 only if it writes L1, L2 only if it writes L2, an L2 fault treated by
    /// its fail mode.
    pub async fn write_back_routed(
        &self,
        key: K,
        entry: Option<Entry<V>>,
        lease: Option<LoadLease>,
        route: Route,
        since: Fence,
    ) -> Result<(), CacheError> {
        let entry = entry.filter(|_| {
            let fenced = self.inner.l1.invalidated_since(&key, since);
            if fenced {
                self.inner.meters.record(Count::Fenced);
            }
            !fenced
        });
        let Some(entry) = entry else {
            if let Some(lease) = lease {
                self.release_lease(lease).await;
            }
            return Ok(());
        };
        let to_l1 = |store: &Self, key: K, entry: Entry<V>| {
            if route.write_l1 {
                store.fill_l1_since(key, entry, since).map(|_| ())
            } else {
                Ok(())
            }
        };
        if self.l2().is_none() || !route.write_l2 {
            if let Some(lease) = lease {
                self.release_lease(lease).await;
            }
            return to_l1(self, key, entry);
        }
        let mode = route.mode(self.fail_mode());
        match mode {
            FailMode::Closed => {
                let ticket = self.remember_write(&key, &entry);
                let in_l2 = self
                    .guarded_as(mode, L2Op::Put, |l2| {
                        let (key, entry) = (key.clone(), entry.clone());
                        async move { l2.put(key, entry).await }
                    })
                    .await;
                self.after_write(&key, since, ticket, matches!(in_l2, Ok(Some(_))))
                    .await;
                let in_l1 = to_l1(self, key, entry);
                if let Some(lease) = lease {
                    self.release_lease(lease).await;
                }
                in_l2.and(in_l1)
            }
            FailMode::Open => {
                let in_l1 = to_l1(self, key.clone(), entry.clone());
                let store = self.clone();
                let ticket = self.remember_write(&key, &entry);
                self.in_background(async move {
                    let written = store
                        .guarded_as(mode, L2Op::Put, |l2| {
                            let key = key.clone();
                            async move { l2.put(key, entry).await }
                        })
                        .await;
                    store
                        .after_write(&key, since, ticket, matches!(written, Ok(Some(_))))
                        .await;
                    if let Some(lease) = lease {
                        store.release_lease(lease).await;
                    }
                })
                .await;
                in_l1
            }
        }
    }

    /// Remembers a load's L2 write of `entry` before it is sent, when other
    /// instances can invalidate the key (there is a bus); its ticket. See
    /// `written.rs`.
    fn remember_write(&self, key: &K, entry: &Entry<V>) -> Option<u64> {
        let inner = &self.inner;
        inner.l2.as_ref()?.bus.as_ref()?;
        inner.written.begin(key, entry, inner.l1.clock().now())
    }

    /// After a load's L2 write of `key` (taken with the fence `since`,
    /// remembered with `ticket`): a failed write is forgotten; one whose key
    /// was invalidated meanwhile — here (the fence says so) or by another
    /// instance (its message was heard) — is taken back: the invalidation's
    /// delete may have landed before this write, so the copy is removed like
    /// an invalidation of its own (from L2, and published, so an instance
    /// that read it in between drops it too; queued for replay when Redis
    /// cannot take it now). Otherwise the write stays remembered, for an
    /// invalidation heard later (`take_back_written`).
    async fn after_write(&self, key: &K, since: Fence, ticket: Option<u64>, ok: bool) {
        let written = &self.inner.written;
        // Only when sure: a key the L1 merely lost track of costs this write
        // nothing more than its L1 copy, never a fleet-wide invalidation.
        let fenced = ok && self.inner.l1.certainly_invalidated_since(key, since);
        let heard = match ticket {
            Some(t) if ok && !fenced => written.returned(key, t, self.inner.l1.clock().now()),
            Some(t) => {
                written.forget(key, t);
                false
            }
            None => false,
        };
        if fenced || heard {
            self.inner.meters.record(Count::Fenced);
            let _ = self.write_l2(Pending::Remove(key.clone())).await;
            // A read here may have copied the write from L2 before it was
            // removed, and this instance hears none of its own messages.
            self.inner.l1.remove_sync(key);
        }
    }

    /// A load's L2 write of `key` (of this `shape`) that returned before
    /// another instance's invalidation of the key was heard: if L2 still
    /// holds exactly that write, it landed after the invalidation's delete
    /// (which would have removed it), so it is removed and the removal
    /// published. A later write of the key is left alone. When Redis cannot
    /// say, the key is removed once it answers (queued).
    pub(crate) async fn take_back_written(&self, key: K, shape: Shape) {
        let removed = self
            .guarded(L2Op::Remove, |l2| {
                let (key, shape) = (&key, &shape);
                async move { l2.remove_if_written(key, shape).await }
            })
            .await;
        match removed {
            Ok(Some(false)) => {}
            Ok(Some(true)) => {
                self.inner.meters.record(Count::Fenced);
                // As in `after_write`: this instance's reads may have copied it.
                self.inner.l1.remove_sync(&key);
                let remove = Pending::Remove(key);
                if !matches!(self.publish(remove.action()).await, Ok(true)) {
                    self.enqueue(remove);
                }
            }
            Err(e) if !e.is_backend_fault() => {}
            Ok(None) | Err(_) => {
                self.inner.meters.record(Count::Fenced);
                self.enqueue(Pending::Remove(key));
            }
        }
    }

    /// [`remember_write`](Self::remember_write) for each of a batch's entries.
    fn remember_writes(&self, entries: &[(K, Entry<V>)]) -> Vec<(K, Option<u64>)> {
        entries
            .iter()
            .map(|(k, e)| (k.clone(), self.remember_write(k, e)))
            .collect()
    }

    /// [`write_back`](Self::write_back) for a batch loaded at once (after
    /// `since` was taken): L1 for each entry (one refused or fenced entry
    /// skips only its own copy), L2 in one pipelined batch of the entries not
    /// fenced — in the background when fail-open, awaited (fault returned)
    /// when fail-closed — then any fenced meanwhile taken back.
    pub async fn write_back_many(
        &self,
        entries: Vec<(K, Entry<V>)>,
        since: Fence,
    ) -> Result<(), CacheError> {
        self.write_back_many_routed(entries, Route::ALL, since)
            .await
    }

    /// [`write_back_many`](Self::write_back_many) for one call's [`Route`].
    pub async fn write_back_many_routed(
        &self,
        entries: Vec<(K, Entry<V>)>,
        route: Route,
        since: Fence,
    ) -> Result<(), CacheError> {
        let l1 = &self.inner.l1;
        let before = entries.len();
        let entries: Vec<(K, Entry<V>)> = entries
            .into_iter()
            .filter(|(k, _)| !l1.invalidated_since(k, since))
            .collect();
        self.inner
            .meters
            .add(Count::Fenced, (before - entries.len()) as u64);
        if entries.is_empty() {
            return Ok(());
        }
        if route.write_l1 {
            for (k, e) in &entries {
                let _ = self.fill_l1_since(k.clone(), e.clone(), since);
            }
        }
        if self.l2().is_none() || !route.write_l2 {
            return Ok(());
        }
        let mode = route.mode(self.fail_mode());
        match mode {
            FailMode::Closed => {
                let tickets = self.remember_writes(&entries);
                let written = self
                    .guarded_as(mode, L2Op::PutMany, |l2| async move {
                        l2.put_many(entries).await
                    })
                    .await;
                for (k, ticket) in &tickets {
                    self.after_write(k, since, *ticket, matches!(written, Ok(Some(_))))
                        .await;
                }
                written.map(|_| ())
            }
            FailMode::Open => {
                let store = self.clone();
                let tickets = self.remember_writes(&entries);
                self.in_background(async move {
                    let written = store
                        .guarded_as(mode, L2Op::PutMany, |l2| async move {
                            l2.put_many(entries).await
                        })
                        .await;
                    for (k, ticket) in &tickets {
                        store
                            .after_write(k, since, *ticket, matches!(written, Ok(Some(_))))
                            .await;
                    }
                })
                .await;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::Timestamp;
    use std::time::Duration;

    fn until(stale_s: u64) -> Entry<u32> {
        Entry::new(stale_s as u32, Timestamp::ZERO, Duration::from_secs(1))
            .with_stale_window(Duration::from_secs(stale_s))
    }

    #[test]
    fn the_longer_lived_stale_entry_wins_and_a_tie_keeps_the_first() {
        let pick = |a: Option<Entry<u32>>, b| longer_lived(a, b).and_then(Entry::into_value);
        assert_eq!(pick(None, until(5)), Some(5));
        assert_eq!(pick(Some(until(5)), until(9)), Some(9));
        assert_eq!(pick(Some(until(9)), until(5)), Some(9));
        let tie = longer_lived(
            Some(until(5)),
            Entry::new(7, Timestamp::ZERO, Duration::from_secs(1))
                .with_stale_window(Duration::from_secs(5)),
        );
        assert_eq!(tie.and_then(Entry::into_value), Some(5));
    }
}
