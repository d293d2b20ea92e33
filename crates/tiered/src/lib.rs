//! L1 + L2 as one [`Store`](cache_core::Store): an in-process
//! [`MemoryStore`](cache_store_memory::MemoryStore) in front of a
//! [`RedisStore`](cache_store_redis::RedisStore), every L2 call behind a
//! [`CircuitBreaker`](cache_breaker::CircuitBreaker), fail-open by default,
//! and L1 copies on other instances dropped through the Redis invalidation bus.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{Clock, Entry, Store, SystemClock};
//! use cache_store_memory::MemoryStore;
//! use cache_store_redis::RedisStore;
//! use cache_tiered::TieredStore;
//!
//! # let server = cache_testkit::RedisServer::start()?;
//! # let url = server.url();
//! # tokio::runtime::Runtime::new()?.block_on(async move {
//! let l1 = MemoryStore::<u64, String>::builder().max_entries(10_000).build()?;
//! let l2 = RedisStore::builder().url(&url).namespace("users").build()?;
//! let store = TieredStore::builder(l1).l2(l2).build()?;
//!
//! let entry = Entry::new("ada".to_owned(), SystemClock.now(), Duration::from_secs(60));
//! store.put(1, entry).await?;               // both tiers, and published on the bus
//! store.l1().clear();                       // as if this were another instance...
//! let hit = store.get(&1).await?;           // ...an L2 hit, which backfills L1
//! assert_eq!(hit.and_then(Entry::into_value).as_deref(), Some("ada"));
//! assert_eq!(store.l1().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).map_err(|e| e.to_string())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Failure model
//!
//! - Every L2 call takes a breaker permit first; an open breaker skips L2 at no
//!   cost. Backend faults (unavailable, timeout) count as breaker failures; bad
//!   input does not.
//! - [`FailMode::Open`] (default): an L2 fault is a miss for reads and a counted,
//!   swallowed error for writes; the L1 keeps serving. [`FailMode::Closed`]: the
//!   fault is returned. Invalid input is always returned.
//! - When Redis returns, the breaker's half-open probes close it and L2 is used
//!   again, with no restart.
//! - Writes and invalidations are published on the bus; a listener task applies
//!   other instances' messages to this L1. After a gap (reconnect, lag) the whole
//!   L1 is cleared: it may have missed invalidations and must not serve them.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod tiered;

pub use tiered::{
    DEFAULT_BREAKER_FAILURES, FailMode, TieredBuilder, TieredStats, TieredStore, combined_health,
    metric_names,
};
