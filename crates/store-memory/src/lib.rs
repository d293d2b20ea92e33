//! The in-process L1 of the resilient cache: a bounded, sharded store with
//! S3-FIFO queues, adaptive TinyLFU admission, and TTL.
//!
//! [`MemoryStore`] holds the caller's value type directly (no encoding), looks keys
//! up by value (no string is built on a hit), is bounded by an entry count and a
//! total weight (bytes, via a weigher), drops expired entries, and counts every
//! eviction by [`EvictionReason`]; an eviction listener hears each entry that
//! leaves and why ([`RemovalCause`]), and a time to idle drops entries nobody
//! reads. What a put evicts or replaces, or a removal takes out, is handed to
//! the listener, or dropped, after the shard's lock is released, so a costly
//! destructor does not hold up the shard's readers. Reads hand out the whole
//! entry ([`MemoryStore::get_sync`]) or just a fresh value
//! ([`MemoryStore::get_fresh_sync`]). It implements
//! [`cache_core::Store`], so it can be used alone or as the L1 of a tiered
//! cache.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{Clock, Entry, MockClock};
//! use cache_store_memory::{EvictionReason, MemoryStore};
//!
//! let clock = MockClock::default();
//! let l1 = MemoryStore::<u64, String>::builder()
//!     .max_entries(2)
//!     .shards(1)
//!     .clock(clock.clone())
//!     .build()?;
//!
//! let ttl = Duration::from_secs(10);
//! l1.put_sync(1, Entry::new("one".into(), clock.now(), ttl))?;
//! l1.put_sync(2, Entry::new("two".into(), clock.now(), ttl))?;
//! assert!(l1.get_sync(&1).is_some()); // 1 has been used since it came in
//! // The value alone, when times and tags are not wanted (the fastest read):
//! assert_eq!(l1.get_fresh_sync(&1), Some(Some("one".to_owned())));
//! l1.put_sync(3, Entry::new("three".into(), clock.now(), ttl))?; // evicts 2
//! assert!(l1.get_sync(&2).is_none());
//!
//! clock.advance(ttl); // everything expires
//! assert!(l1.get_sync(&1).is_none());
//! let stats = l1.stats();
//! assert_eq!(stats.evictions(EvictionReason::Capacity), 1);
//! assert_eq!(stats.evictions(EvictionReason::Expired), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Crate features
//!
//! None: the store needs only `cache-core`, `parking_lot`, `hashbrown` and `foldhash`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod climb;
mod config;
mod contract;
mod fence;
mod seed;
mod shadow;
mod shard;
mod spare;
mod stats;
mod store;
mod sync;

pub use config::{EvictionListener, MemoryStoreBuilder, Weigher};
pub use fence::Fence;
pub use stats::{EvictionReason, MemoryStats, RemovalCause};
pub use store::MemoryStore;
