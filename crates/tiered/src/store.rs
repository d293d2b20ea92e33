//! [`Store`] for [`TieredStore`]: the tier protocol's read, writes through L2, the
//! bus and the recovery queue, and the health report.

use std::hash::Hash;

use cache_core::{CacheError, CacheKey, Codec, DecodeKey, Entry, Store, StoreHealth};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::guard::L2Op;
use crate::meters::Count;
use crate::protocol::TierRead;
use crate::recovery::Pending;
use crate::tiered::TieredStore;

impl<K, V, C> Store<K, V> for TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// [`TieredStore::read`]: the fresh entry from L1 or L2, else the
    /// longest-lived stale one (fail-closed: an L2 fault is returned).
    async fn get(&self, key: &K) -> Result<Option<Entry<V>>, CacheError> {
        match self.read(key, None, |_| true).await {
            TierRead::Fresh(e, _) => Ok(Some(e)),
            TierRead::Missing { fault: Some(e), .. } => Err(e),
            TierRead::Missing { stale, fault: None } => Ok(stale),
        }
    }

    /// Writes L2, tells other instances, then writes L1. An entry L1 refuses
    /// (over its key or weight limit) is still in L2 and other instances dropped
    /// their copies; this L1 drops its old copy too, and the refusal is returned.
    async fn put(&self, key: K, entry: Entry<V>) -> Result<(), CacheError> {
        self.inner.meters.record(Count::Write);
        // Memory only: nothing to send, so no copy of the entry to send. The
        // L2 write is boxed: inline, its state (the Redis write, the bus
        // message, the recovery queue) made every put's future kilobytes to
        // move, with or without an L2; one allocation is nothing beside the
        // round trip it waits for.
        if self.inner.l2.is_some() {
            Box::pin(self.write_l2(Pending::Put(key.clone(), entry.clone()))).await?;
        }
        // Fencing: a read of this key begun before the write (L2 still held
        // the old entry, or the source the old value) does not put it back.
        self.fill_l1(key, entry)
    }

    /// Removes `key` from L1 and L2 and tells other instances. `true` when either
    /// tier held it. When L2 cannot be reached (or earlier writes still wait), the
    /// L2 and bus part is queued and replayed when Redis answers again; the answer
    /// then reflects L1 only (see [`TieredStore::recovery_pending`]).
    ///
    /// L1 is emptied twice: before L2, so this instance stops serving the old
    /// value at once, and again once L2 has it, since a read here that missed
    /// in between may have found the old value still in L2 (its backfill is
    /// fenced by the second removal, or undone by it).
    async fn remove(&self, key: &K) -> Result<bool, CacheError> {
        self.inner.meters.record(Count::Invalidation);
        let l1 = &self.inner.l1;
        let in_l1 = l1.remove_sync(key);
        if self.inner.l2.is_none() {
            return Ok(in_l1);
        }
        let in_l2 = self.write_l2(Pending::Remove(key.clone())).await;
        l1.remove_sync(key);
        Ok(in_l1 || in_l2? > 0)
    }

    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<Entry<V>>>, CacheError> {
        let now = self.inner.l1.clock().now();
        let mut out: Vec<Option<Entry<V>>> = keys
            .iter()
            .map(|k| self.inner.l1.get_sync(k).filter(|e| e.is_fresh(now)))
            .collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        let hits = (keys.len() - missing.len()) as u64;
        self.inner.meters.add(Count::TierL1Hit, hits);
        if missing.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<K> = missing.iter().map(|&i| keys[i].clone()).collect();
        let found = self.read_many_l2(&wanted).await?;
        for (slot, entry) in missing.into_iter().zip(found) {
            out[slot] = entry;
        }
        Ok(out)
    }

    async fn put_many(&self, entries: Vec<(K, Entry<V>)>) -> Result<(), CacheError> {
        self.inner.meters.add(Count::Write, entries.len() as u64);
        // Memory only: no copies, keys or bus message to build (as in `put`).
        if self.inner.l2.is_some() {
            let ops = entries
                .iter()
                .map(|(k, e)| Pending::Put(k.clone(), e.clone()))
                .collect();
            let keys: Vec<K> = entries.iter().map(|(k, _)| k.clone()).collect();
            let l2_entries = entries.clone();
            self.write_batch(
                L2Op::PutMany,
                ops,
                Some(Self::keys_action(&keys)),
                |l2| async move { l2.put_many(l2_entries).await.map(|()| 0) },
            )
            .await?;
        }
        let mut refused = Ok(());
        for (k, e) in entries {
            if let Err(e) = self.fill_l1(k, e) {
                refused = Err(e);
            }
        }
        refused
    }

    async fn remove_many(&self, keys: &[K]) -> Result<u64, CacheError> {
        self.inner
            .meters
            .add(Count::Invalidation, keys.len() as u64);
        let mut removed = 0;
        for k in keys {
            removed += u64::from(self.inner.l1.remove_sync(k));
        }
        if self.inner.l2.is_none() {
            return Ok(removed);
        }
        let ops = keys.iter().map(|k| Pending::Remove(k.clone())).collect();
        let in_l2 = self
            .write_batch(
                L2Op::RemoveMany,
                ops,
                Some(Self::keys_action(keys)),
                |l2| async move { Store::<K, V>::remove_many(l2, keys).await },
            )
            .await;
        // Again once L2 has it, as in `remove`.
        for k in keys {
            self.inner.l1.remove_sync(k);
        }
        Ok(removed.max(in_l2?))
    }

    /// Removes the tag's entries from L1, L2 and other instances; L1 twice, as
    /// in [`remove`](Self::remove).
    async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        self.inner.meters.record(Count::Invalidation);
        cache_core::entry::validate_tag(tag)?;
        let l1 = &self.inner.l1;
        let in_l1 = l1.invalidate_tag_sync(tag);
        if self.inner.l2.is_none() {
            return Ok(in_l1);
        }
        let in_l2 = self.write_l2(Pending::Tag(tag.to_owned())).await;
        l1.invalidate_tag_sync(tag);
        Ok(in_l1.max(in_l2?))
    }

    /// Removes the prefix's entries from L1, L2 and other instances; L1
    /// twice, as in [`remove`](Self::remove).
    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, CacheError> {
        self.inner.meters.record(Count::Invalidation);
        let l1 = &self.inner.l1;
        let in_l1 = l1.invalidate_prefix_sync(prefix);
        if self.inner.l2.is_none() {
            return Ok(in_l1);
        }
        let in_l2 = self.write_l2(Pending::Prefix(prefix.to_owned())).await;
        l1.invalidate_prefix_sync(prefix);
        Ok(in_l1.max(in_l2?))
    }

    async fn health(&self) -> StoreHealth {
        let entries = self.inner.l1.len() as u64;
        let h = self.check().await;
        let Some(l2) = &h.l2 else {
            return StoreHealth::new("tiered", h.status)
                .with_entries(entries)
                .with_detail("L1 only");
        };
        let mut detail = format!(
            "breaker {}, L2: {}",
            l2.breaker.as_str(),
            l2.redis.summary()
        );
        for why in &h.reasons {
            detail.push_str(", ");
            detail.push_str(why);
        }
        let mut report = StoreHealth::new("tiered", h.status)
            .with_entries(entries)
            .with_detail(detail);
        if let Some(l) = l2.redis.latency {
            report = report.with_latency(l);
        }
        report
    }
}
