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
//! - Writes and invalidations are published on the bus (a Redis Stream); a
//!   listener task applies other instances' messages to this L1. A listener that
//!   reconnects reads what it missed. Only when history is really gone (Redis
//!   restarted or failed over, or the stream was trimmed past its position) does
//!   it report a gap, and then the [`GapPolicy`] decides: by default L1 entries
//!   stay but stop being fresh within 30 s, spread out, so an outage does not end
//!   with every hot key going to the source at once.
//! - [`TieredStore::clear`] empties the namespace everywhere in one round trip:
//!   it raises a clear epoch in Redis and publishes it; entries created before
//!   it read as misses on every instance (nothing is scanned).
//! - Writes and invalidations (`put`, `put_many`, `remove`, `remove_many`,
//!   `invalidate_tag`, `invalidate_prefix`, `clear`) that cannot reach L2 or the bus join
//!   a bounded recovery queue, one operation per key, tag or prefix (the last
//!   wins, order kept), and are applied to L2 and published as soon as Redis
//!   answers again, ahead of any newer write. While the queue holds anything,
//!   health is degraded. A full queue drops its oldest operation and counts it.
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tracing` | no | log events: L2 faults (at most one warning a second), bus gaps and the policy applied, recovery replays and overflow, and the Redis store's connection events; never a key or a URL |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod builder;
mod clear;
mod config;
mod guard;
mod health;
mod lease;
mod listener;
mod log;
mod meters;
mod protocol;
mod recovery;
mod replay;
mod shutdown;
mod store;
mod tiered;
mod written;

pub use builder::TieredStoreBuilder;
pub use cache_store_memory::Fence;
pub use cache_store_redis::LoadLease;
pub use config::{
    DEFAULT_GAP_POLICY, DEFAULT_RECOVERY_CAPACITY, FailMode, GapPolicy, Route, default_breaker,
};
pub use health::{L2Health, TierHealth, combined_health};
pub use lease::{FleetLease, LeaseOrValue};
pub use meters::{Count, Meters};
pub use protocol::{Tier, TierRead, longer_lived};
pub use shutdown::ShutdownReport;
pub use tiered::{TieredStats, TieredStore};
