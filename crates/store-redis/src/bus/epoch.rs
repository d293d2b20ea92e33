//! The clear epoch: a namespace-wide barrier that makes `clear` O(1).
//!
//! The epoch is a Unix-millisecond time kept in one small key beside the bus
//! stream (under the same hash tag, so in a cluster both live in one slot and a
//! single script raises the epoch and appends [`Action::ClearBefore`] to the
//! stream atomically). Entries created before the epoch are cleared: readers
//! treat them as misses, and they leave Redis with their TTL or the next write.
//! Nothing is scanned.

use cache_core::{CacheError, Codec, Timestamp};

use super::{Action, FIELD, InvalidationBus, bus_key};
use crate::lease::hashed_part;
use crate::store::RedisStore;

/// Raises the epoch in `KEYS[1]` to `ARGV[1]` (never lowers it) and, when a
/// stream key is given, appends the clear message `ARGV[4]` under field `ARGV[3]`
/// to `KEYS[2]`, trimmed to about `ARGV[2]` messages.
const RAISE_EPOCH: &str = "\
local at = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if at > cur then redis.call('SET', KEYS[1], ARGV[1]) end
if #KEYS > 1 then return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[3], ARGV[4]) end
return 0";

/// The epoch key of the namespace whose bus stream is `stream_key`, and whether
/// it shares the stream's cluster slot (it does unless the stream key hashes
/// as a whole and contains a `}`).
fn epoch_key_for(stream_key: &str) -> (String, bool) {
    let tag = hashed_part(stream_key);
    if tag.contains('}') {
        (format!("{stream_key}#epoch"), false)
    } else {
        (format!("{{{tag}}}#epoch"), true)
    }
}

impl<C: Codec> RedisStore<C> {
    /// The Redis key holding this namespace's clear epoch.
    #[must_use]
    pub fn epoch_key(&self) -> String {
        epoch_key_for(&bus_key(self.key_space())).0
    }

    /// The namespace's clear epoch: entries created before it are cleared.
    /// [`Timestamp::ZERO`] when the namespace was never cleared (or the key
    /// holds something that is not a number).
    pub async fn clear_epoch(&self) -> Result<Timestamp, CacheError> {
        let raw: Option<String> = self
            .query("clear_epoch", redis::cmd("GET").arg(self.epoch_key()))
            .await?;
        Ok(Timestamp::from_millis(
            raw.and_then(|s| s.parse().ok()).unwrap_or(0),
        ))
    }

    /// Raises the clear epoch to `before` (a later epoch already set stays), in
    /// one round trip, without telling anyone; see
    /// [`InvalidationBus::publish_clear`] for the version that tells the fleet.
    pub async fn raise_clear_epoch(&self, before: Timestamp) -> Result<(), CacheError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RAISE_EPOCH)
            .arg(1)
            .arg(self.epoch_key())
            .arg(before.as_millis());
        let _: redis::Value = self.query("clear", &cmd).await?;
        Ok(())
    }
}

impl<C: Codec> InvalidationBus<C> {
    /// Clears the namespace fleet-wide: raises its clear epoch to `before`
    /// (entries created before it read as misses everywhere) and publishes
    /// [`Action::ClearBefore`] so every subscriber drops its older L1 copies.
    /// One script, one round trip, atomic: no subscriber can see the message
    /// before the epoch. Returns the message's stream id.
    ///
    /// ```no_run
    /// use cache_core::{Clock, SystemClock};
    /// use cache_store_redis::RedisStore;
    ///
    /// # async fn demo() -> Result<(), cache_core::CacheError> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// store.bus().publish_clear(SystemClock.now()).await?;
    /// assert!(store.clear_epoch().await? > cache_core::Timestamp::ZERO);
    /// # Ok(()) }
    /// ```
    pub async fn publish_clear(&self, before: Timestamp) -> Result<String, CacheError> {
        let action = Action::ClearBefore(before.as_millis());
        let (epoch_key, same_slot) = epoch_key_for(&self.key);
        if !same_slot {
            // No key can share the stream's slot: two round trips, epoch first.
            self.store.raise_clear_epoch(before).await?;
            return self.publish(action).await;
        }
        let payload = self.payload(&action)?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RAISE_EPOCH)
            .arg(2)
            .arg(epoch_key)
            .arg(&*self.key)
            .arg(before.as_millis())
            .arg(self.history)
            .arg(FIELD)
            .arg(payload);
        self.store.query("publish", &cmd).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn the_epoch_shares_the_stream_slot_when_it_can() {
        for stream in ["app:users#bus", "{app}:users#bus", "a{b}:c#bus"] {
            let (epoch, same) = epoch_key_for(stream);
            assert!(same);
            assert_eq!(Slot::for_key(&epoch), Slot::for_key(stream), "{stream}");
            assert_ne!(epoch, stream);
        }
        let (epoch, same) = epoch_key_for("app:a}b#bus");
        assert!(!same);
        assert_eq!(epoch, "app:a}b#bus#epoch");
    }
}
