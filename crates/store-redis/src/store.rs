//! [`RedisStore`]: the [`Store`] implementation over Redis.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_core::{
    CacheError, CacheKey, Clock, Codec, Entry, InvalidInput, KeySpace, Postcard, Store,
    StoreHealth, Timestamp,
};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Cmd, FromRedisValue, Pipeline, RedisResult};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::RedisStoreBuilder;
use crate::conn::{Connections, Handle, Lease, breaks_connection, map_error};
use crate::envelope;
use crate::scan::escape_glob;

/// TTLs above this (about 142 years) are stored without an expiry.
const PERSISTENT_TTL_MS: u128 = 1 << 52;

/// Deletes a key only if it still holds the bytes that failed to decode, so a value
/// written in the meantime by someone else survives.
pub(crate) const DELETE_IF_SAME: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) end return 0";

/// Deletes a key only if its value starts with `ARGV[1]` (an envelope header).
const DELETE_IF_HEADER: &str = "if redis.call('GETRANGE', KEYS[1], 0, string.len(ARGV[1]) - 1) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) end return 0";

#[derive(Debug, Default)]
pub(crate) struct StoreCounters {
    ops: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) oversized_reads: AtomicU64,
}

pub(crate) struct Inner {
    pub(crate) name: Box<str>,
    pub(crate) space: KeySpace,
    pub(crate) conns: Connections,
    pub(crate) op_timeout: Duration,
    pub(crate) max_value_size: usize,
    /// Largest value read back (longer ones are a counted miss and deleted).
    pub(crate) max_read_size: usize,
    pub(crate) scan_count: usize,
    pub(crate) batch_size: usize,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) counters: StoreCounters,
}

/// The Redis L2 store: entries in versioned envelopes under `{prefix}:{namespace}:{key}`,
/// for any key type that implements [`CacheKey`] and any serde value type.
///
/// Cloning is cheap and clones share the connection. See the [crate docs](crate) for
/// an example and for how tags and prefix invalidation are laid out.
pub struct RedisStore<C = Postcard> {
    pub(crate) inner: Arc<Inner>,
    codec: C,
}

impl<C: Clone> Clone for RedisStore<C> {
    fn clone(&self) -> Self {
        RedisStore {
            inner: self.inner.clone(),
            codec: self.codec.clone(),
        }
    }
}

impl<C> std::fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("name", &self.inner.name)
            .field("namespace", &self.inner.space.namespace_prefix())
            .field("cluster", &self.inner.conns.target.is_cluster())
            .finish_non_exhaustive()
    }
}

/// Counters of a [`RedisStore`] since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RedisStats {
    /// Operations sent (a batch chunk or a scan step counts once).
    pub ops: u64,
    /// Operations that failed (not counting timeouts).
    pub errors: u64,
    /// Operations that hit the per-operation timeout.
    pub timeouts: u64,
    /// Values that failed to decode, or were not strings (each was treated as a
    /// miss and deleted).
    pub decode_errors: u64,
    /// Values longer than the read limit (each was treated as a miss and
    /// deleted, without being read whole).
    pub oversized_reads: u64,
    /// Connections opened.
    pub connects: u64,
    /// Connect attempts that failed or timed out.
    pub connect_failures: u64,
    /// Connections dropped after they broke.
    pub disconnects: u64,
}

impl RedisStore<Postcard> {
    /// A builder with the defaults (postcard codec, 100 ms operation timeout).
    pub fn builder() -> RedisStoreBuilder<Postcard> {
        RedisStoreBuilder::default()
    }

    /// Builds a store for `url` with the defaults and opens its connection, failing if
    /// Redis cannot be reached within the connect timeout.
    pub async fn connect(url: &str) -> Result<Self, CacheError> {
        let store = Self::builder().url(url).build()?;
        store.ping().await?;
        Ok(store)
    }
}

impl<C: Codec> RedisStore<C> {
    pub(crate) fn from_inner(inner: Arc<Inner>, codec: C) -> Self {
        RedisStore { inner, codec }
    }

    /// The key space (`{prefix}:{namespace}:`) of this store.
    #[must_use]
    pub fn key_space(&self) -> &KeySpace {
        &self.inner.space
    }

    /// The full Redis key for `key`.
    pub fn redis_key<K: CacheKey + ?Sized>(&self, key: &K) -> Result<String, InvalidInput> {
        self.inner.space.full_key(key)
    }

    /// The Redis key of the set that lists the keys carrying `tag`.
    #[must_use]
    pub fn tag_key(&self, tag: &str) -> String {
        let space = &self.inner.space;
        format!("{}:{}#tag:{tag}", space.prefix(), space.namespace())
    }

    /// The per-operation timeout.
    #[must_use]
    pub fn op_timeout(&self) -> Duration {
        self.inner.op_timeout
    }

    /// Whether this store talks to a Redis Cluster.
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        self.inner.conns.target.is_cluster()
    }

    /// The store's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Counters since the store was built.
    #[must_use]
    pub fn stats(&self) -> RedisStats {
        let c = &self.inner.counters;
        let k = &self.inner.conns.counters;
        RedisStats {
            ops: c.ops.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            decode_errors: c.decode_errors.load(Ordering::Relaxed),
            oversized_reads: c.oversized_reads.load(Ordering::Relaxed),
            connects: k.connects.load(Ordering::Relaxed),
            connect_failures: k.connect_failures.load(Ordering::Relaxed),
            disconnects: k.disconnects.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Runs one operation (one round trip) on a connection, bounded by the operation
    /// timeout (getting the connection included). A broken connection is dropped so
    /// the next operation reconnects.
    ///
    /// With a connection open (the usual case) no timer is armed here: the
    /// connection's own response timeout, set to the operation timeout, bounds the
    /// reply. Only waiting for a connection arms one, around the whole operation.
    pub(crate) async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, CacheError>
    where
        F: FnOnce(Handle) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let inner = &self.inner;
        inner.counters.ops.fetch_add(1, Ordering::Relaxed);
        let attempt = |lease: Lease| async move {
            let Lease { handle, ticket } = lease;
            f(handle).await.map_err(|e| {
                if breaks_connection(&e) {
                    inner.conns.discard(&ticket);
                }
                map_error(op, inner.op_timeout, e)
            })
        };
        let result = match inner.conns.ready() {
            Ok(lease) => attempt(lease).await,
            Err(slot) => {
                let waited = async {
                    let lease = inner.conns.handle_at(slot).await?;
                    attempt(lease).await
                };
                // Boxed: rare (no connection ready), and it would otherwise make
                // every operation's future larger by a timer and a wait.
                match Box::pin(tokio::time::timeout(inner.op_timeout, waited)).await {
                    Ok(result) => result,
                    Err(_) => Err(CacheError::Timeout {
                        op,
                        after: inner.op_timeout,
                    }),
                }
            }
        };
        if let Err(e) = &result {
            let counter = if matches!(e, CacheError::Timeout { .. }) {
                &inner.counters.timeouts
            } else {
                &inner.counters.errors
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &Cmd,
    ) -> Result<T, CacheError> {
        self.run(op, |mut h| async move { cmd.query_async(&mut h).await })
            .await
    }

    /// Sends `PING`; `Ok` when Redis answered.
    pub async fn ping(&self) -> Result<Duration, CacheError> {
        let started = Instant::now();
        let _: String = self.query("ping", &redis::cmd("PING")).await?;
        Ok(started.elapsed())
    }

    /// Removes `key` only while it still holds the write of `entry` (its
    /// envelope [`header`](envelope::header): same codec, marker, tags flag
    /// and timestamps); `Ok(true)` if it did. A later write of the key, or
    /// none, is left alone, so a writer can take back its own write without
    /// touching what others wrote since. A key of another type is an error
    /// ([`CacheError::Refused`]), and stays.
    ///
    /// ```no_run
    /// # async fn demo(store: cache_store_redis::RedisStore) -> Result<(), cache_core::CacheError> {
    /// use cache_core::{Entry, Store, Timestamp};
    /// use std::time::Duration;
    /// let written = Entry::new(1u32, Timestamp::from_millis(5), Duration::from_secs(60));
    /// Store::<u64, u32>::put(&store, 7, written.clone()).await?;
    /// assert!(store.remove_if_written(&7u64, &written).await?);
    /// assert!(!store.remove_if_written(&7u64, &written).await?);
    /// # Ok(()) }
    /// ```
    pub async fn remove_if_written<K: CacheKey + ?Sized, V>(
        &self,
        key: &K,
        entry: &Entry<V>,
    ) -> Result<bool, CacheError> {
        let full = self.inner.space.full_key(key)?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DELETE_IF_HEADER)
            .arg(1)
            .arg(&full)
            .arg(&envelope::header::<V, C>(entry)[..]);
        Ok(self.query::<i64>("remove_if_written", &cmd).await? == 1)
    }

    /// Runs `cmd` on one node: the server itself when standalone, the node `route`
    /// picks in a cluster (commands without a key are not routed by the client).
    pub(crate) async fn query_node<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: Cmd,
        route: SingleNodeRoutingInfo,
    ) -> Result<T, CacheError> {
        self.run(op, |h| async move {
            match h {
                Handle::Single(mut c) => cmd.query_async(&mut c).await,
                Handle::Cluster(mut c) => {
                    let v = c.route_command(cmd, RoutingInfo::SingleNode(route)).await?;
                    Ok(redis::from_redis_value(v)?)
                }
            }
        })
        .await
    }

    fn encode_entry<V: Serialize>(&self, entry: &Entry<V>) -> Result<Vec<u8>, CacheError> {
        let mut bytes = Vec::with_capacity(64);
        envelope::encode(&self.codec, entry, &mut bytes)?;
        if bytes.len() > self.inner.max_value_size {
            return Err(InvalidInput::ValueTooLarge {
                size: bytes.len() as u64,
                max: self.inner.max_value_size as u64,
            }
            .into());
        }
        Ok(bytes)
    }

    /// Turns bytes read from Redis into an entry; anything that fails to decode is a
    /// miss, counted and deleted (only if the key still holds those bytes).
    pub(crate) async fn decode_or_evict<V: DeserializeOwned>(
        &self,
        key: &str,
        bytes: Vec<u8>,
        now: Timestamp,
    ) -> Option<Entry<V>> {
        match envelope::decode::<V, C>(&self.codec, &bytes) {
            Ok(entry) if entry.is_expired(now) => None,
            Ok(entry) => Some(entry),
            Err(_why) => {
                self.inner
                    .counters
                    .decode_errors
                    .fetch_add(1, Ordering::Relaxed);
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(DELETE_IF_SAME).arg(1).arg(key).arg(bytes);
                // Best effort: a failed delete leaves a value that will be a miss again.
                // Boxed, so this rare path does not enlarge every read's future.
                let _ = Box::pin(self.query::<i64>("delete_corrupt", &cmd)).await;
                None
            }
        }
    }

    /// Adds the commands that store one encoded entry to `writes` (tag memberships in
    /// their own phase, sent first). An entry already past its physical expiry becomes
    /// a delete.
    fn write_commands<V>(
        &self,
        full: String,
        entry: &Entry<V>,
        bytes: Vec<u8>,
        now: Timestamp,
        writes: &mut Writes,
    ) {
        let ttl = entry.physical_ttl(now).as_millis();
        if ttl == 0 {
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(&full);
            writes.values.push((full, unlink));
            return;
        }
        for tag in entry.tags().iter() {
            let tag_key = self.tag_key(tag);
            let mut sadd = redis::cmd("SADD");
            sadd.arg(&tag_key).arg(&full);
            writes.tags.push((tag_key.clone(), sadd));
            if ttl < PERSISTENT_TTL_MS {
                // The set lives as long as its longest-lived member (NX: first TTL;
                // GT: only ever extended). Needs Redis 7.0.
                for mode in ["NX", "GT"] {
                    let mut expire = redis::cmd("PEXPIRE");
                    expire.arg(&tag_key).arg(ttl as u64).arg(mode);
                    writes.tags.push((tag_key.clone(), expire));
                }
            } else {
                let mut persist = redis::cmd("PERSIST");
                persist.arg(&tag_key);
                writes.tags.push((tag_key, persist));
            }
        }
        let mut set = redis::cmd("SET");
        set.arg(&full).arg(bytes);
        if ttl < PERSISTENT_TTL_MS {
            set.arg("PX").arg(ttl as u64);
        }
        writes.values.push((full, set));
    }

    /// Sends prepared writes: tag memberships strictly before the values they list, so
    /// an invalidation that starts after a put returned always finds its key.
    async fn send_writes(&self, writes: Writes) -> Result<(), CacheError> {
        if self.is_cluster() {
            // Different nodes: no ordering between them, so two phases.
            if !writes.tags.is_empty() {
                self.send_keyed("put_tags", writes.tags).await?;
            }
            self.send_keyed("put", writes.values).await
        } else {
            let mut all = writes.tags;
            all.extend(writes.values);
            self.send_keyed("put", all).await
        }
    }

    /// Sends keyed commands without waiting for each: one pipeline on a standalone
    /// server; in a cluster one pipeline per hash slot (a cluster pipeline may not
    /// cross slots), all in flight at once. Commands on the same key keep their order.
    async fn send_keyed(
        &self,
        op: &'static str,
        cmds: Vec<(String, Cmd)>,
    ) -> Result<(), CacheError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let cluster = self.is_cluster();
        self.run(op, |h| async move {
            match h {
                Handle::Cluster(c) if cluster => {
                    let mut by_slot: HashMap<Slot, Pipeline> = HashMap::new();
                    for (key, cmd) in cmds {
                        by_slot
                            .entry(Slot::for_key(key.as_bytes()))
                            .or_default()
                            .add_command(cmd)
                            .ignore();
                    }
                    let sends = by_slot.into_values().map(|pipe| {
                        let mut c = c.clone();
                        async move { pipe.query_async::<()>(&mut c).await }
                    });
                    futures_util::future::try_join_all(sends).await.map(|_| ())
                }
                mut h => {
                    let mut pipe = redis::pipe();
                    for (_, cmd) in cmds {
                        pipe.add_command(cmd).ignore();
                    }
                    pipe.query_async::<()>(&mut h).await
                }
            }
        })
        .await
    }

    /// Deletes full keys in chunks of the batch size; returns how many existed.
    pub(crate) async fn unlink_all(&self, keys: &[Vec<u8>]) -> Result<u64, CacheError> {
        let mut removed = 0;
        for chunk in keys.chunks(self.inner.batch_size) {
            let mut cmd = redis::cmd("UNLINK");
            for key in chunk {
                cmd.arg(key.as_slice());
            }
            removed += self.query::<u64>("unlink", &cmd).await?;
        }
        Ok(removed)
    }
}

/// Writes prepared by a put: tag memberships (sent first), then the values.
#[derive(Default)]
struct Writes {
    tags: Vec<(String, Cmd)>,
    values: Vec<(String, Cmd)>,
}

impl<K, V, C> Store<K, V> for RedisStore<C>
where
    K: CacheKey + Send + Sync,
    V: Serialize + DeserializeOwned + Send + Sync,
    C: Codec,
{
    async fn get(&self, key: &K) -> Result<Option<Entry<V>>, CacheError> {
        let full = self.inner.space.full_key(key)?;
        let raw = self.read_raw(&full).await?;
        Ok(self.entry_from(&full, raw, self.inner.clock.recent()).await)
    }

    async fn put(&self, key: K, entry: Entry<V>) -> Result<(), CacheError> {
        let full = self.inner.space.full_key(&key)?;
        let bytes = self.encode_entry(&entry)?;
        let mut writes = Writes::default();
        self.write_commands(full, &entry, bytes, self.inner.clock.now(), &mut writes);
        self.send_writes(writes).await
    }

    async fn remove(&self, key: &K) -> Result<bool, CacheError> {
        let full = self.inner.space.full_key(key)?;
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(&full);
        Ok(self.query::<u64>("remove", &cmd).await? > 0)
    }

    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<Entry<V>>>, CacheError> {
        // Every full key in one buffer rather than one `String` each.
        let mut buf = String::with_capacity(keys.len() * 48);
        let full: Vec<std::ops::Range<usize>> = keys
            .iter()
            .map(|k| self.inner.space.push_full_key(&mut buf, k))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(full.len());
        let now = self.inner.clock.recent();
        for chunk in full.chunks(self.inner.batch_size) {
            let keys: Vec<&str> = chunk.iter().map(|k| &buf[k.clone()]).collect();
            let raws = self.read_many_raw(&keys).await?;
            for (key, raw) in keys.into_iter().zip(raws) {
                out.push(self.entry_from(key, raw, now).await);
            }
        }
        Ok(out)
    }

    async fn put_many(&self, entries: Vec<(K, Entry<V>)>) -> Result<(), CacheError> {
        // Validate and encode everything before the first write.
        let prepared: Vec<(String, Entry<V>, Vec<u8>)> = entries
            .into_iter()
            .map(|(k, e)| {
                let full = self.inner.space.full_key(&k)?;
                let bytes = self.encode_entry(&e)?;
                Ok((full, e, bytes))
            })
            .collect::<Result<_, CacheError>>()?;
        let now = self.inner.clock.now();
        let mut prepared = prepared.into_iter().peekable();
        while prepared.peek().is_some() {
            let mut writes = Writes::default();
            for (full, entry, bytes) in prepared.by_ref().take(self.inner.batch_size) {
                self.write_commands(full, &entry, bytes, now, &mut writes);
            }
            self.send_writes(writes).await?;
        }
        Ok(())
    }

    async fn remove_many(&self, keys: &[K]) -> Result<u64, CacheError> {
        let full: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| self.inner.space.full_key(k).map(String::into_bytes))
            .collect::<Result<_, _>>()?;
        self.unlink_all(&full).await
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        cache_core::entry::validate_tag(tag)?;
        let tag_key = self.tag_key(tag);
        let mut removed = 0;
        let mut cursor = 0u64;
        loop {
            let mut cmd = redis::cmd("SSCAN");
            cmd.arg(&tag_key)
                .arg(cursor)
                .arg("COUNT")
                .arg(self.inner.scan_count);
            let (next, members): (u64, Vec<Vec<u8>>) = self.query("sscan", &cmd).await?;
            for chunk in members.chunks(self.inner.batch_size) {
                removed += self.unlink_all(chunk).await?;
                // Forget exactly the members handled; a key tagged meanwhile stays listed.
                let mut srem = redis::cmd("SREM");
                srem.arg(&tag_key);
                for member in chunk {
                    srem.arg(member.as_slice());
                }
                let _: u64 = self.query("srem", &srem).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(removed)
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, CacheError> {
        let head = self.inner.space.namespace_prefix();
        let pattern = format!("{}*", escape_glob(&format!("{head}{prefix}")));
        match self.masters().await? {
            None => self.scan_and_unlink(None, &pattern).await,
            Some(masters) => {
                let mut removed = 0;
                for node in &masters {
                    removed += self.scan_and_unlink(Some(node), &pattern).await?;
                }
                Ok(removed)
            }
        }
    }

    async fn health(&self) -> StoreHealth {
        let h = self.check().await;
        let status = h.status(self.inner.op_timeout);
        let detail = format!("`{}`: {}", self.inner.name, h.summary());
        let mut report = StoreHealth::new("l2", status).with_detail(detail);
        if let Some(l) = h.latency {
            report = report.with_latency(l);
        }
        report
    }
}
