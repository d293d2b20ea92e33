//! Bounded reads: a value is read with `GETRANGE key 0 limit`, so Redis sends
//! at most `limit + 1` bytes whatever the key holds. A value over the limit is
//! treated like corrupt data — a miss, counted, and deleted — and costs the
//! reader at most one copy of the limit, not several copies of the value.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use cache_core::{CacheError, Codec, Entry, Timestamp};
use redis::cluster_routing::Slot;
use redis::{RedisResult, Value};
use serde::de::DeserializeOwned;

use crate::conn::Handle;
use crate::store::RedisStore;

/// Deletes a key whose value is (still) longer than `ARGV[1]` bytes.
const DELETE_IF_LONGER: &str = "if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then return redis.call('UNLINK', KEYS[1]) end return 0";

/// What one bounded read found.
pub(crate) enum Raw {
    /// Nothing (or an empty string, which no entry encodes to).
    Missing,
    /// The whole value, within the limit.
    Bytes(Vec<u8>),
    /// More than the limit.
    Oversized,
    /// Not a string (a list, a hash, …).
    WrongType,
}

impl Raw {
    pub(crate) fn of(bytes: Vec<u8>, limit: usize) -> Raw {
        if bytes.is_empty() {
            Raw::Missing
        } else if bytes.len() > limit {
            Raw::Oversized
        } else {
            Raw::Bytes(bytes)
        }
    }

    fn of_value(v: RedisResult<Value>, limit: usize) -> RedisResult<Raw> {
        match v {
            Ok(Value::BulkString(bytes)) => Ok(Raw::of(bytes, limit)),
            Ok(Value::Nil) => Ok(Raw::Missing),
            Ok(other) => Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "GETRANGE answered with something else than a string",
                format!("{other:?}").chars().take(32).collect::<String>(),
            ))),
            Err(e) if e.code() == Some("WRONGTYPE") => Ok(Raw::WrongType),
            Err(e) => Err(e),
        }
    }
}

fn getrange(key: &str, limit: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("GETRANGE");
    cmd.arg(key).arg(0).arg(limit);
    cmd
}

impl<C: Codec> RedisStore<C> {
    /// The read limit in bytes (see `max_read_size`).
    fn limit(&self) -> usize {
        self.inner().max_read_size
    }

    /// One bounded read.
    pub(crate) async fn read_raw(&self, key: &str) -> Result<Raw, CacheError> {
        let limit = self.limit();
        match self.query::<Vec<u8>>("get", &getrange(key, limit)).await {
            Ok(bytes) => Ok(Raw::of(bytes, limit)),
            Err(CacheError::Refused { code, .. }) if code == "WRONGTYPE" => Ok(Raw::WrongType),
            Err(e) => Err(e),
        }
    }

    /// Bounded reads of `keys` in one round trip: one pipeline on a standalone
    /// server, one per hash slot in a cluster (all in flight at once); in order.
    pub(crate) async fn read_many_raw(&self, keys: &[&str]) -> Result<Vec<Raw>, CacheError> {
        let limit = self.limit();
        let cluster = self.is_cluster();
        self.run("get_many", |h| async move {
            let mut out: Vec<Raw> = (0..keys.len()).map(|_| Raw::Missing).collect();
            match h {
                Handle::Cluster(c) if cluster => {
                    let mut by_slot: HashMap<Slot, (redis::Pipeline, Vec<usize>)> = HashMap::new();
                    for (i, key) in keys.iter().enumerate() {
                        let (pipe, at) = by_slot.entry(Slot::for_key(key.as_bytes())).or_default();
                        pipe.add_command(getrange(key, limit));
                        at.push(i);
                    }
                    let reads = by_slot.into_values().map(|(mut pipe, at)| {
                        let mut c = c.clone();
                        async move {
                            let got: Vec<RedisResult<Value>> =
                                pipe.ignore_errors().query_async(&mut c).await?;
                            Ok::<_, redis::RedisError>((at, got))
                        }
                    });
                    for (at, got) in futures_util::future::try_join_all(reads).await? {
                        for (i, v) in at.into_iter().zip(got) {
                            out[i] = Raw::of_value(v, limit)?;
                        }
                    }
                }
                mut h => {
                    let mut pipe = redis::pipe();
                    for key in keys {
                        pipe.add_command(getrange(key, limit));
                    }
                    let got: Vec<RedisResult<Value>> =
                        pipe.ignore_errors().query_async(&mut h).await?;
                    for (slot, v) in out.iter_mut().zip(got) {
                        *slot = Raw::of_value(v, limit)?;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// An entry from what a read found: bytes are decoded (corrupt ones are a
    /// counted miss and deleted); a value over the limit or of another type is
    /// a counted miss and deleted too.
    pub(crate) async fn entry_from<V: DeserializeOwned>(
        &self,
        key: &str,
        raw: Raw,
        now: Timestamp,
    ) -> Option<Entry<V>> {
        let counters = &self.inner().counters;
        match raw {
            Raw::Missing => None,
            Raw::Bytes(bytes) => self.decode_or_evict(key, bytes, now).await,
            Raw::Oversized => {
                counters.oversized_reads.fetch_add(1, Ordering::Relaxed);
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(DELETE_IF_LONGER).arg(1).arg(key).arg(self.limit());
                // Best effort, boxed: a rare path that must not enlarge every read.
                let _ = Box::pin(self.query::<i64>("delete_oversized", &cmd)).await;
                None
            }
            Raw::WrongType => {
                counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(key);
                let _ = Box::pin(self.query::<u64>("unlink", &unlink)).await;
                None
            }
        }
    }
}
