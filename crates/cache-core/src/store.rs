//! The [`Store`] trait: what every tier (memory, Redis, tiered) implements.

use std::future::Future;

use crate::entry::Entry;
use crate::error::CacheError;
use crate::health::StoreHealth;

/// An asynchronous key-value store of [`Entry`]s, generic over the caller's key
/// type `K` and value type `V`.
///
/// Contract for implementors:
/// - `get` never returns an entry that [`is_expired`](Entry::is_expired); it may
///   return a stale one (the caller decides whether to serve it).
/// - Bad input (an over-long key, an oversized value, …) is refused with
///   [`CacheError::InvalidInput`] *before* anything is written.
/// - Bytes that fail to decode are a miss, never an error the caller must handle
///   and never a panic.
/// - The batch forms have default implementations that loop over the single forms;
///   stores with a cheaper batch path (one round trip) override them.
///
/// Methods return `impl Future + Send`, so stores compose without boxing.
pub trait Store<K, V>: Send + Sync
where
    K: Send + Sync,
    V: Send + Sync,
{
    /// Looks `key` up. `Ok(None)` is a miss.
    fn get(&self, key: &K) -> impl Future<Output = Result<Option<Entry<V>>, CacheError>> + Send;

    /// Stores `entry` under `key`, replacing any previous entry.
    fn put(&self, key: K, entry: Entry<V>) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// Removes `key`; `true` if something was removed.
    fn remove(&self, key: &K) -> impl Future<Output = Result<bool, CacheError>> + Send;

    /// Looks up several keys; the result has one slot per key, in order.
    fn get_many(
        &self,
        keys: &[K],
    ) -> impl Future<Output = Result<Vec<Option<Entry<V>>>, CacheError>> + Send {
        async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.get(key).await?);
            }
            Ok(out)
        }
    }

    /// Stores several entries. Every entry is validated before the first is written.
    fn put_many(
        &self,
        entries: Vec<(K, Entry<V>)>,
    ) -> impl Future<Output = Result<(), CacheError>> + Send {
        async move {
            for (key, entry) in entries {
                self.put(key, entry).await?;
            }
            Ok(())
        }
    }

    /// Removes several keys; returns how many were removed.
    fn remove_many(&self, keys: &[K]) -> impl Future<Output = Result<u64, CacheError>> + Send {
        async move {
            let mut n = 0;
            for key in keys {
                n += u64::from(self.remove(key).await?);
            }
            Ok(n)
        }
    }

    /// Removes every entry carrying `tag`; returns how many were removed (a store
    /// that invalidates lazily may return 0 and still guarantee that no tagged
    /// entry written before the call is returned afterwards).
    fn invalidate_tag(&self, tag: &str) -> impl Future<Output = Result<u64, CacheError>> + Send;

    /// Removes every entry whose encoded key (see [`CacheKey`](crate::CacheKey))
    /// starts with `prefix`; returns how many were removed.
    fn invalidate_prefix(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<u64, CacheError>> + Send;

    /// Reports the store's health. Never fails: a failing check is an unhealthy report.
    fn health(&self) -> impl Future<Output = StoreHealth> + Send;
}
