//! Penetration protection: a bloom filter of known keys.
//!
//! A request for a key the filter has never seen is *definitely* unknown and can
//! be answered "absent" without touching any store or the source. The filter
//! never gives a false negative; its false-positive rate is chosen up front.
//!
//! - [`BloomFilter::with_rate`] sizes the filter from (expected items, target
//!   false-positive rate) with the optimal bit and hash counts.
//! - Double hashing from one stable, seeded 64-bit hash (XXH3): filters built with
//!   the same parameters in different processes are identical.
//! - [`AtomicBloomFilter`] inserts through `&self` for a shared hot path.
//! - Fill ratio, estimated false-positive rate and item count; `union` refuses
//!   mismatched filters; serialization (serde, or [`BloomFilter::to_bytes`])
//!   validates on load, so inconsistent data is an error, never a corrupt filter.
//!
//! # Example
//!
//! ```
//! use cache_bloom::BloomFilter;
//!
//! let mut known = BloomFilter::with_rate(10_000, 0.01)?;
//! for id in 0..10_000u64 {
//!     known.insert(&id);
//! }
//! assert!(known.contains(&42u64)); // never a false negative
//! let unknown = (1_000_000..1_010_000u64).filter(|id| known.contains(id)).count();
//! assert!(unknown < 200, "about 1 % false positives, got {unknown}");
//!
//! let shipped = BloomFilter::from_bytes(&known.to_bytes()?)?;
//! assert_eq!(shipped, known);
//! # Ok::<(), cache_bloom::BloomError>(())
//! ```
//!
//! Items are hashed through their `Hash` implementation. Integers, strings and
//! byte slices hash the same everywhere; to share filters with programs in other
//! languages, insert byte strings.
//!
//! # Crate features
//!
//! None.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod filter;
mod params;

pub use filter::{AtomicBloomFilter, BloomFilter};
pub use params::{BloomError, MAX_BITS, MAX_HASHES, Params};
