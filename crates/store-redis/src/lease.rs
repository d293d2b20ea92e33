//! Load leases: one instance of a fleet loads a missing key while the others wait
//! for the value it writes (fleet-wide single flight).
//!
//! A lease is a plain Redis string, `SET {tag}#lease:{entry key} token NX PX ttl`,
//! under the same hash tag as the entry, so in a cluster it lives in the entry's
//! slot. It is released with a compare-and-delete on the token, and expires by
//! itself if its holder dies mid-load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::{CacheError, CacheKey, Entry};
use serde::de::DeserializeOwned;

use crate::read::Raw;

use crate::store::{DELETE_IF_SAME, RedisStore};

/// Takes the lease in `KEYS[1]` (token `ARGV[1]`, `ARGV[2]` ms) if it is free,
/// and reads the entry in `KEYS[2]` (at most `ARGV[3]` + 1 bytes) either way:
/// `{1 if taken else 0, bytes or ''}`.
const LEASE_AND_READ: &str = "\
local got = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
local v = redis.pcall('GETRANGE', KEYS[2], 0, ARGV[3])
if type(v) ~= 'string' then v = '' end
return {got, v}";

/// Sets a new expiry on a key only if it still holds the caller's token.
const EXTEND_IF_SAME: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

/// The lease on loading one key, held by this instance until released or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadLease {
    key: String,
    token: String,
}

impl LoadLease {
    /// The Redis key holding the lease.
    #[must_use]
    pub fn redis_key(&self) -> &str {
        &self.key
    }
}

/// What [`RedisStore::try_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// This instance holds the lease now: load, write, then release it.
    Acquired(LoadLease),
    /// Another instance holds it: wait for the value it writes.
    Held,
    /// This key cannot have a lease (its Redis key hashes as a whole and contains
    /// a `}`, so no lease key can share its cluster slot): load locally.
    Unsupported,
}

/// The part of a Redis key that decides its cluster slot: the first non-empty
/// `{…}` section, else the whole key.
pub(crate) fn hashed_part(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The lease key of the entry stored under `entry_key`, in the same cluster slot;
/// `None` when no key can share that slot by hash tag (see
/// [`LeaseAttempt::Unsupported`]).
#[must_use]
pub fn lease_key_for(entry_key: &str) -> Option<String> {
    let tag = hashed_part(entry_key);
    if tag.contains('}') {
        return None;
    }
    Some(format!("{{{tag}}}#lease:{entry_key}"))
}

/// A token no other lease attempt uses: process id, wall time and a counter.
fn new_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

impl<C: cache_core::Codec> RedisStore<C> {
    /// Tries to take the lease on loading `key` for `ttl` (one round trip:
    /// `SET … NX PX`). A lease whose holder dies expires after `ttl`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_store_redis::{LeaseAttempt, RedisStore};
    ///
    /// # async fn demo() -> Result<(), cache_core::CacheError> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// if let LeaseAttempt::Acquired(lease) = store.try_lease(&7u64, Duration::from_secs(5)).await? {
    ///     // … load key 7, write it …
    ///     store.release_lease(&lease).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_lease<K: CacheKey + ?Sized>(
        &self,
        key: &K,
        ttl: Duration,
    ) -> Result<LeaseAttempt, CacheError> {
        let entry_key = self.redis_key(key)?;
        let Some(lease_key) = lease_key_for(&entry_key) else {
            return Ok(LeaseAttempt::Unsupported);
        };
        let token = new_token();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&lease_key).arg(&token).arg("NX").arg("PX").arg(ms);
        let set: Option<String> = self.query("lease", &cmd).await?;
        Ok(match set {
            Some(_) => LeaseAttempt::Acquired(LoadLease {
                key: lease_key,
                token,
            }),
            None => LeaseAttempt::Held,
        })
    }

    /// [`try_lease`](Self::try_lease) and a read of the entry in the same round
    /// trip (one script; the lease shares the entry's slot): an instance that
    /// missed can tell "someone is loading" from "someone just finished" without
    /// a second look. The read is bounded and judged like any other (corrupt or
    /// oversized bytes are a miss, deleted); whether the entry is fresh is the
    /// caller's call.
    pub async fn try_lease_reading<K, V>(
        &self,
        key: &K,
        ttl: Duration,
    ) -> Result<(LeaseAttempt, Option<Entry<V>>), CacheError>
    where
        K: CacheKey + ?Sized,
        V: DeserializeOwned,
    {
        let entry_key = self.redis_key(key)?;
        let Some(lease_key) = lease_key_for(&entry_key) else {
            return Ok((LeaseAttempt::Unsupported, None));
        };
        let token = new_token();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let limit = self.inner().max_read_size;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(LEASE_AND_READ)
            .arg(2)
            .arg(&lease_key)
            .arg(&entry_key)
            .arg(&token)
            .arg(ms)
            .arg(limit);
        let (got, bytes): (i64, Vec<u8>) = self.query("lease", &cmd).await?;
        let now = self.inner().clock.recent();
        let entry = self
            .entry_from(&entry_key, Raw::of(bytes, limit), now)
            .await;
        let attempt = if got == 1 {
            LeaseAttempt::Acquired(LoadLease {
                key: lease_key,
                token,
            })
        } else {
            LeaseAttempt::Held
        };
        Ok((attempt, entry))
    }

    /// Gives a lease back (only if it is still ours: an expired lease taken by
    /// another instance is left alone). Returns whether it was deleted.
    pub async fn release_lease(&self, lease: &LoadLease) -> Result<bool, CacheError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DELETE_IF_SAME)
            .arg(1)
            .arg(&lease.key)
            .arg(&lease.token);
        let deleted: i64 = self.query("release_lease", &cmd).await?;
        Ok(deleted == 1)
    }

    /// Extends a lease this instance still holds to `ttl` from now (a holder whose
    /// load runs long keeps its lease alive this way). Returns whether it was
    /// still ours.
    pub async fn extend_lease(&self, lease: &LoadLease, ttl: Duration) -> Result<bool, CacheError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(EXTEND_IF_SAME)
            .arg(1)
            .arg(&lease.key)
            .arg(&lease.token)
            .arg(ms);
        let extended: i64 = self.query("extend_lease", &cmd).await?;
        Ok(extended == 1)
    }

    /// Whether some instance holds the lease on loading `key` right now.
    pub async fn lease_held<K: CacheKey + ?Sized>(&self, key: &K) -> Result<bool, CacheError> {
        let entry_key = self.redis_key(key)?;
        let Some(lease_key) = lease_key_for(&entry_key) else {
            return Ok(false);
        };
        let n: i64 = self
            .query("lease_held", redis::cmd("EXISTS").arg(&lease_key))
            .await?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn lease_keys_share_the_entry_slot() {
        for entry in ["app:users:7", "{app}:users:7", "app:users:{7}x", "a{b}:{}"] {
            let lease = lease_key_for(entry).expect("supported");
            assert_eq!(
                Slot::for_key(&lease),
                Slot::for_key(entry),
                "{entry} → {lease}"
            );
            assert_ne!(lease, entry);
        }
        assert_eq!(lease_key_for("app:users:a}b"), None);
        assert_eq!(
            lease_key_for("a:{}:b"),
            None,
            "an empty tag hashes the whole key"
        );
    }

    proptest! {
        #[test]
        fn any_supported_key_gets_a_lease_in_its_slot(key in "[a-z{}:]{0,12}") {
            let entry = format!("app:users:{key}");
            match lease_key_for(&entry) {
                Some(lease) => prop_assert_eq!(Slot::for_key(&lease), Slot::for_key(&entry)),
                None => prop_assert!(hashed_part(&entry).contains('}'), "no lease for {}", entry),
            }
        }
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(new_token(), new_token());
    }
}
