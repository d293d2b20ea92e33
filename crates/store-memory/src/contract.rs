//! The [`Store`] contract for [`MemoryStore`]: its synchronous methods in
//! ready futures.

use std::future::{Ready, ready};
use std::hash::Hash;

use cache_core::{CacheError, CacheKey, Entry, HealthStatus, Store, StoreHealth};

use crate::MemoryStore;
use crate::fence::Fill;

// The futures are `Ready` on purpose, and say so in the signatures: code that knows
// it holds a `MemoryStore` can rely on every call completing on the first poll.
#[allow(refining_impl_trait)]
impl<K, V> Store<K, V> for MemoryStore<K, V>
where
    K: CacheKey + Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
{
    fn get(&self, key: &K) -> Ready<Result<Option<Entry<V>>, CacheError>> {
        ready(Ok(self.get_sync(key)))
    }

    fn put(&self, key: K, entry: Entry<V>) -> Ready<Result<(), CacheError>> {
        ready(self.put_sync(key, entry))
    }

    fn remove(&self, key: &K) -> Ready<Result<bool, CacheError>> {
        ready(Ok(self.remove_sync(key)))
    }

    fn get_many(&self, keys: &[K]) -> Ready<Result<Vec<Option<Entry<V>>>, CacheError>> {
        ready(Ok(keys.iter().map(|k| self.get_sync(k)).collect()))
    }

    fn put_many(&self, entries: Vec<(K, Entry<V>)>) -> Ready<Result<(), CacheError>> {
        // Validate all first, so a refused entry leaves the store untouched.
        let weights = match entries
            .iter()
            .map(|(key, entry)| self.check(key, entry))
            .collect::<Result<Vec<u64>, _>>()
        {
            Ok(w) => w,
            Err(e) => return ready(Err(e)),
        };
        let now = self.clock.now();
        for ((key, entry), weight) in entries.into_iter().zip(weights) {
            self.insert_at(key, entry, weight, now, Fill::Plain);
        }
        ready(Ok(()))
    }

    fn remove_many(&self, keys: &[K]) -> Ready<Result<u64, CacheError>> {
        ready(Ok(keys
            .iter()
            .map(|k| u64::from(self.remove_sync(k)))
            .sum()))
    }

    fn invalidate_tag(&self, tag: &str) -> Ready<Result<u64, CacheError>> {
        ready(Ok(self.invalidate_tag_sync(tag)))
    }

    fn invalidate_prefix(&self, prefix: &str) -> Ready<Result<u64, CacheError>> {
        ready(Ok(self.invalidate_prefix_sync(prefix)))
    }

    fn health(&self) -> Ready<StoreHealth> {
        ready(StoreHealth::new("memory", HealthStatus::Healthy).with_entries(self.len() as u64))
    }
}
