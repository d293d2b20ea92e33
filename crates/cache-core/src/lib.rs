//! Contracts of the resilient cache.
//!
//! Every store and the facade speak these types:
//!
//! - [`Store`] — the asynchronous key-value contract every tier implements
//!   (get / put / remove, batch forms, tag and prefix invalidation, health).
//! - [`Entry`] — a value or an explicit *absent* marker (negative caching), with a
//!   logical expiry (`fresh_until`), a physical expiry (`stale_until`, which bounds
//!   stale serving) and [`Tags`].
//! - [`CacheKey`], [`Namespace`], [`KeySpace`] — typed keys with an unambiguous string
//!   form, validated namespaces and the `{prefix}:{namespace}:{key}` layout.
//! - [`Codec`] — values to bytes at the L2 boundary: [`Postcard`] by default, `Json`
//!   behind the `json` feature.
//! - [`Clock`] — injectable time: [`SystemClock`] in production, [`MockClock`] in tests.
//! - [`CacheError`] — one error type whose [`kind`](CacheError::kind) tells
//!   unavailable / timeout / decode / invalid input / config apart.
//!
//! This crate knows nothing of Redis, tokio or any particular store.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{Clock, Codec, Entry, KeySpace, MockClock, Namespace, Postcard};
//!
//! // Time is injected: tests move it by hand.
//! let clock = MockClock::default();
//! let entry = Entry::new(vec![1u32, 2, 3], clock.now(), Duration::from_secs(30))
//!     .with_stale_window(Duration::from_secs(120))
//!     .with_tags(["catalog"])?;
//!
//! // Typed keys become unambiguous backend keys.
//! let space = KeySpace::new(Namespace::new("shop")?, Namespace::new("products")?);
//! assert_eq!(space.full_key(&("sku", 42u32))?, "shop:products:sku:42");
//!
//! // Values cross the L2 boundary through a codec; garbage is an error, not a panic.
//! let mut bytes = Vec::new();
//! Postcard.encode(entry.value().unwrap(), &mut bytes)?;
//! assert_eq!(Postcard.decode::<Vec<u32>>(&bytes)?, vec![1, 2, 3]);
//! assert!(Postcard.decode::<Vec<u32>>(&[0xff, 0xff]).is_err());
//!
//! clock.advance(Duration::from_secs(60));
//! assert!(!entry.is_fresh(clock.now()) && !entry.is_expired(clock.now()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `json` | no | the [`Json`] codec, for caches shared with services in other languages (adds `serde_json`) |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod clock;
pub mod codec;
pub mod entry;
pub mod error;
pub mod health;
pub mod key;
pub mod store;

pub use clock::{Clock, MockClock, SystemClock, Timestamp};
#[cfg(feature = "json")]
pub use codec::Json;
pub use codec::{Codec, Postcard};
pub use entry::{Entry, Tags};
pub use error::{BoxError, CacheError, ConfigError, ErrorKind, InvalidInput};
pub use health::{HealthStatus, StoreHealth};
pub use key::{CacheKey, DecodeKey, KeySpace, Namespace};
pub use store::Store;
