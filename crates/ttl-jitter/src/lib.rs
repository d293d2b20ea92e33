//! Avalanche protection: randomized TTLs and probabilistic early refresh.
//!
//! - [`Jitter`] spreads expiry times so entries written together do not expire
//!   together: symmetric (±ratio, the default is ±20 %), one-sided (never above
//!   the base, for hard maximums) or absolute (±a duration). Exact integer
//!   arithmetic in nanoseconds, saturating at `Duration::MAX`; ratios outside
//!   `[0, 1]` are rejected with [`InvalidRatio`].
//! - [`XFetch`] decides per read whether to refresh a value before it expires,
//!   with probability `exp(−t/(β·δ))` (VLDB 2015), so one reader refreshes a hot
//!   key just before expiry instead of every reader just after.
//!   [`RecomputeTime`] tracks δ.
//! - Randomness is injectable: every decision has a `*_with(rng)` form taking any
//!   `rand::Rng` (seed one in tests); the plain form uses the thread-local RNG.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use rand::{SeedableRng, rngs::StdRng};
//! use cache_ttl_jitter::{Jitter, RecomputeTime, XFetch};
//!
//! let mut rng = StdRng::seed_from_u64(7);
//! let jitter = Jitter::symmetric(0.2)?;
//! let ttl = jitter.apply_with(Duration::from_secs(300), &mut rng);
//! assert!(ttl >= Duration::from_secs(240) && ttl <= Duration::from_secs(360));
//!
//! let delta = RecomputeTime::default();
//! delta.record(Duration::from_millis(200)); // the last load took 200 ms
//! let xfetch = XFetch::default();
//! // With an hour left, a refresh is (almost) never due; at expiry it always is.
//! assert!(!xfetch.should_refresh_with(Duration::from_secs(3600), delta.get(), &mut rng));
//! assert!(xfetch.should_refresh_with(Duration::ZERO, delta.get(), &mut rng));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Crate features
//!
//! None; depends only on `rand`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod jitter;
mod xfetch;

pub use jitter::{InvalidRatio, Jitter};
pub use xfetch::{InvalidBeta, RecomputeTime, XFetch};
