//! The resilient cache's front door: one builder, typed handles, and
//! [`get_or_load`](Cache::get_or_load) with every protection wired in.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use resilient_cache::Cache;
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let users: Cache<u64, String> = Cache::builder("users")
//!     // .redis_url("redis://cache.internal:6379")  // optional L2; fail-open by default
//!     .default_ttl(Duration::from_secs(300))        // jittered ±20% on every write
//!     .negative_ttl(Duration::from_secs(10))        // `None` is cached this long
//!     .max_entries(100_000)
//!     .build()?;
//!
//! // However many callers ask at once, the loader runs once per key.
//! let name = users
//!     .get_or_load(42, |id| async move { Some(format!("user {id}")) })
//!     .await?;
//! assert_eq!(name.as_deref(), Some("user 42"));
//! assert_eq!(users.get(&42).await?.as_deref(), Some("user 42"));
//! assert_eq!(users.stats().loads, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The read path
//!
//! `get_or_load(key, loader)`:
//! 1. **Bloom guard** (optional): a key the filter has never seen is `None` at once.
//! 2. **L1**: a fresh entry is returned without any await.
//! 3. **Singleflight** on the key: one caller reads L2 for all of them, and a load
//!    runs as one spawned task per key that every caller waits for. The load's
//!    flight belongs to that task, not to a caller: a caller that goes away (a
//!    client disconnect, a `select!` timeout) never causes a second load, and
//!    callers arriving meanwhile join it.
//! 4. **L2** through the circuit breaker and the per-operation timeout. A fault or an
//!    open breaker is a miss (fail-open, counted) unless the cache is fail-closed.
//! 5. A **fresh L2 hit** backfills L1 and is returned.
//! 6. **Fleet single flight** ([`FleetFlight`], on by default with an L2): the
//!    instance takes a load lease on the key in Redis; if another instance holds it,
//!    this one waits for that instance's value in L2 instead of loading. Redis
//!    unreachable or the breaker open: the load stays local, never an error.
//! 7. Otherwise the **loader** runs as a task that writes its own result: `Some(v)`
//!    with the jittered TTL, `None` as *absent* with the negative TTL, to both tiers.
//!    A soft timeout serves a stale value and lets the load finish in the
//!    background; a hard timeout gives up.
//! 8. A **failed load** serves a stale value within the stale window (fail-safe);
//!    without one, every coalesced caller gets the same [`Error::Load`].
//!
//! Writes (`set`, `remove`, `invalidate_tag`, `invalidate_prefix`, `clear`) go to
//! both tiers and are published so other instances drop their L1 copies
//! ([`clear`](Cache::clear) in one round trip whatever the size: a clear epoch). While Redis cannot be
//! reached they change this instance's L1 at once and wait in a recovery queue for
//! the rest, replayed as soon as Redis answers.
//!
//! # Observability
//!
//! [`Cache::stats`] and [`Cache::health`] work without any metrics recorder; the
//! metrics in [`metric_names`] go through the `metrics` facade (install the recorder
//! before building caches). Logs go through `tracing` (feature `tracing`).
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tracing` | yes | log events: a `cache_load` span per load (cache name and outcome, never the key), slow loads, breaker transitions, and from the tiers below Redis connection lost/failing/restored, L2 faults (at most one warning a second), bus gaps, recovery replays; without a subscriber an event costs a level check |
//! | `prometheus` | no | `PrometheusExporter`: installs a Prometheus recorder, or renders one the service installed (`from_handle`) |
//! | `http` | no | `Endpoint`: `/metrics` and `/health/cache` over HTTP (axum), mountable in your router or on its own port; implies `prometheus` |
//! | `tls` | no | `rediss://` URLs and `CacheBuilder::redis_tls`: a private CA, mutual TLS, a server name (rustls with ring; no OpenSSL) |
//!
//! # Configuration and shutdown
//!
//! [`config::CacheConfig`] reads every data option from a file (serde: TOML,
//! YAML, JSON…) or from environment variables, with durations like `"30s"`;
//! [`Cache::shutdown`] drains background L2 writes and the recovery queue
//! before the process exits.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod batch;
mod builder;
mod cache;
pub mod config;
mod connect;
mod error;
mod everyday;
mod fleet;
mod health;
mod l2_breaker;
mod load;
mod log;
mod memo;
#[cfg(feature = "http")]
mod observe;
mod options;
mod refresh;
mod report;
mod rules;
mod shutdown;
mod warm;
mod write;

pub use builder::{
    CacheBuilder, DEFAULT_MAX_ENTRIES, DEFAULT_NEGATIVE_TTL, DEFAULT_SLOW_LOAD, DEFAULT_TTL,
};
pub use cache::Cache;
pub use error::Error;
pub use fleet::FleetFlight;
pub use health::UPKEEP_EVERY;
#[doc(hidden)]
pub use memo::__private;
pub use memo::{Computed, MemoOptions};
pub use options::{LoadContext, LoadOptions, Skip};
pub use refresh::RefreshAhead;
pub use report::{CacheStats, HealthReport, L1Report, L2Report, metric_names};
pub use rules::{
    ChangeEvent, FireReport, Invalidation, InvalidationRules, InvalidationTarget, Invalidator,
    RuleError, RuleSet, RulesBuilder, TargetKind,
};
pub use warm::{DEFAULT_WARM_CONCURRENCY, WarmOptions, WarmProgress, WarmReport};
pub use write::WriteOptions;

/// The README's examples, compiled and run as doctests (they show the `http`
/// feature, so they run with it: `cargo xtask test` enables every feature).
#[cfg(all(doctest, feature = "http"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The crate's own README (its crates.io page), compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadmeDoctests;

/// The user guide's examples (`docs/guide/`), compiled and run as doctests.
#[cfg(all(doctest, feature = "http"))]
mod guide {
    #[doc = include_str!("../../../docs/guide/getting-started.md")]
    struct GettingStarted;
    #[doc = include_str!("../../../docs/guide/concepts.md")]
    struct Concepts;
    #[doc = include_str!("../../../docs/guide/protections.md")]
    struct Protections;
    #[doc = include_str!("../../../docs/guide/configuration.md")]
    struct Configuration;
    #[doc = include_str!("../../../docs/guide/tuning.md")]
    struct Tuning;
    #[doc = include_str!("../../../docs/guide/best-practices.md")]
    struct BestPractices;
    #[doc = include_str!("../../../docs/guide/migrating.md")]
    struct Migrating;
}

/// The runbook's example of exposing metrics and health.
#[cfg(all(doctest, feature = "http"))]
#[doc = include_str!("../../../docs/operations.md")]
struct OperationsDoctests;

/// The metric catalogue, the Prometheus exporter (feature `prometheus`) and the
/// HTTP endpoint (feature `http`).
pub use cache_metrics;
#[cfg(feature = "prometheus")]
pub use cache_metrics::PrometheusExporter;
#[cfg(feature = "http")]
pub use cache_metrics::http::Endpoint;

pub use cache_bloom::AtomicBloomFilter;
pub use cache_breaker::CircuitBreakerBuilder as BreakerBuilder;
pub use cache_core::{CacheKey, DecodeKey, HealthStatus};
pub use cache_macros::{CacheKey, cached};
pub use cache_store_memory::RemovalCause;
#[cfg(feature = "tls")]
pub use cache_store_redis::{TlsOptions, TlsRoots};
pub use cache_tiered::{FailMode, GapPolicy, ShutdownReport};

/// What a service needs to build and use caches, in one import:
///
/// ```
/// use resilient_cache::prelude::*;
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let clock = MockClock::default();
/// let cache: Cache<u64, String> = Cache::builder("users").clock(clock.clone()).build()?;
/// let v = cache.get_or_load(1, |id| async move { Some(format!("user {id}")) }).await?;
/// assert_eq!(v.as_deref(), Some("user 1"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub mod prelude {
    pub use crate::{
        BreakerBuilder, Cache, CacheBuilder, Error, FailMode, GapPolicy, HealthStatus, Jitter,
        RefreshAhead, WriteOptions, XFetch,
    };
    pub use cache_breaker::State as BreakerState;
    pub use cache_core::{
        CacheKey, Clock, Codec, ConfigError, DecodeKey, ErrorKind, MockClock, Postcard, SystemClock,
    };
}
pub use cache_ttl_jitter::{Jitter, XFetch};
