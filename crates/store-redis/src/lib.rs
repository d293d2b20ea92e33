//! The Redis L2 of the resilient cache: a [`Store`](cache_core::Store) over a standalone
//! Redis or a Redis Cluster, with one API for both.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{Clock, Entry, Store, SystemClock};
//! use cache_store_redis::RedisStore;
//!
//! # let server = cache_testkit::RedisServer::start()?;
//! # let url = server.url();
//! # tokio::runtime::Runtime::new()?.block_on(async move {
//! // Connect (every option is validated by `build()`; nothing connects until used).
//! let store = RedisStore::builder()
//!     .url(&url) // e.g. "redis://:password@cache.internal:6379/0"
//!     .prefix("shop")
//!     .namespace("products")
//!     .op_timeout(Duration::from_millis(100))
//!     .build()?;
//!
//! // A typed put and get: keys are any `CacheKey`, values any serde type.
//! let now = SystemClock.now();
//! let entry = Entry::new("red shoes".to_owned(), now, Duration::from_secs(60))
//!     .with_tags(["catalog"])?;
//! store.put(("sku", 42u32), entry).await?;
//! let hit: Option<Entry<String>> = store.get(&("sku", 42u32)).await?;
//! assert_eq!(hit.and_then(Entry::into_value).as_deref(), Some("red shoes"));
//!
//! // A batch in one round trip (MGET; split per slot in a cluster).
//! let got: Vec<Option<Entry<String>>> =
//!     store.get_many(&[("sku", 42u32), ("sku", 7u32)]).await?;
//! assert!(got[0].is_some() && got[1].is_none());
//!
//! // Tag invalidation: every entry tagged "catalog" is gone.
//! assert_eq!(Store::<(&str, u32), String>::invalidate_tag(&store, "catalog").await?, 1);
//! let gone: Option<Entry<String>> = store.get(&("sku", 42u32)).await?;
//! assert!(gone.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).map_err(|e| e.to_string())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! (The example starts a real `redis-server` through the workspace's test kit.)
//!
//! # How entries are stored
//!
//! - **Keys** are `{prefix}:{namespace}:{key}`, the key part being the
//!   [`CacheKey`](cache_core::CacheKey) encoding; over-long keys are refused before
//!   anything is sent.
//! - **Values** are a versioned [`envelope`]: a fixed header (magic, version, codec id,
//!   flags, created / fresh-until / stale-until times), the tags, then the codec's
//!   payload. The Redis TTL is the entry's physical expiry (`stale_until`), set in
//!   milliseconds with `PX`. Bytes that fail to decode — foreign data, an older
//!   version, another codec, truncation — are a miss: the key is deleted (only if it
//!   still holds those bytes) and [`RedisStats::decode_errors`] counts it.
//! - **Tags** are sets: `{prefix}:{namespace}#tag:{tag}` lists the keys carrying the
//!   tag and lives as long as its longest-lived member. A put adds the memberships
//!   *before* writing the value, so an invalidation that starts after a put returned
//!   always finds the key. `invalidate_tag` walks the set with `SSCAN` in steps and
//!   `UNLINK`s members in batches, removing from the set only what it handled (a key
//!   tagged meanwhile stays listed). No command spans two slots, so this works in a
//!   cluster; reads cost nothing extra. Needs Redis 7.0 or newer (`PEXPIRE … NX|GT`).
//! - **Prefix invalidation** runs `SCAN MATCH {prefix}:{namespace}:{escaped}* COUNT n`
//!   step by step on every master and `UNLINK`s what it finds in batches — never
//!   `KEYS`, never one giant command; glob metacharacters in the prefix are escaped.
//! - **Load leases** ([`RedisStore::try_lease`]): `{tag}#lease:{entry key}`, where
//!   `tag` is the part of the entry key that decides its cluster slot, so a lease
//!   always lives in its entry's slot. Taken with `SET … NX PX`, given back with a
//!   compare-and-delete on a per-attempt token, expired by Redis if the holder dies.
//!
//! # Failure behaviour
//!
//! Every operation, getting a connection included, is bounded by the operation timeout
//! (default 100 ms) and fails with [`CacheError::Timeout`](cache_core::CacheError) or
//! [`CacheError::Unavailable`](cache_core::CacheError). A broken connection is dropped
//! and reopened by the next operation; after a failed connect, operations fail at once
//! for the reconnect backoff. Nothing here retries or falls back: that is the tiered
//! store's job (breaker, fail-open).
//!
//! # The invalidation bus
//!
//! [`RedisStore::bus`] publishes [`Invalidation`]s to the namespace's Redis Stream and
//! subscribes to it. A [`Subscription`] reads with a blocking `XREAD` from the last id
//! it saw, so after a reconnect it replays what it missed; it reports
//! [`BusEvent::Gap`] only when history is really gone (the server changed, or the
//! stream was trimmed past its position), and the receiver decides what to distrust.
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | no | `rediss://` URLs and `TlsOptions`: private CAs, mutual TLS, a server name (rustls with ring; no OpenSSL) |
//! | `json` | no | the JSON codec from `cache-core` |
//! | `tracing` | no | log events: a first connect that fails (error), a connection lost or failing (one warning per outage) and restored, the bus's disconnects, reconnects and gaps; never a key or a URL |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod bus;
mod config;
mod conn;
pub mod envelope;
mod health;
mod lease;
mod log;
mod race;
mod read;
mod redact;
mod scan;
mod security;
mod store;

pub use bus::{
    Action, BusEvent, BusStats, BusStatus, DEFAULT_HISTORY, DEFAULT_KEEPALIVE, GapReason,
    Invalidation, InvalidationBus, MAX_MESSAGE_SIZE, Subscription,
};
pub use config::{
    DEFAULT_BATCH_SIZE, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_VALUE_SIZE, DEFAULT_OP_TIMEOUT,
    DEFAULT_RECONNECT_BACKOFF, DEFAULT_SCAN_COUNT, MAX_POOL_SIZE, REDIS_MAX_VALUE_SIZE,
    RedisStoreBuilder,
};
pub use health::{NodeHealth, RedisHealth};
pub use lease::{LeaseAttempt, LoadLease, lease_key_for};
pub use redact::redact_url;
pub use scan::escape_glob;
#[cfg(feature = "tls")]
pub use security::{TlsOptions, TlsRoots};
pub use store::{RedisStats, RedisStore};
