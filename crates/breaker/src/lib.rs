//! A circuit breaker: fail fast while a dependency is down, probe until it recovers.
//!
//! States and vocabulary follow resilience4j: **closed** (calls flow, outcomes are
//! recorded), **open** (calls are rejected at once until the wait in open state
//! has passed), **half-open** (a fixed number of probe calls decide: all succeed →
//! closed, one fails → open again, optionally with a growing wait).
//!
//! - Policies ([`Policy`]): consecutive failures, or the failure rate over a
//!   count-based or time-based sliding window with a minimum number of calls.
//!   Thresholds are inclusive. Slow successes can count as failures.
//! - Two APIs: async [`CircuitBreaker::call`] around any future, and the
//!   synchronous permit API ([`CircuitBreaker::try_acquire`] → [`Permit`] →
//!   success / failure / ignore). A dropped permit frees its slot and records
//!   nothing, so a cancelled call can never wedge the breaker in half-open.
//! - Permits belong to a generation: an outcome reported after the state moved
//!   on is ignored.
//! - Time comes from an injectable [`Clock`]; tests use [`MockClock`].
//! - Transitions are observable: [`CircuitBreakerBuilder::on_transition`] fires exactly once
//!   per transition; [`CircuitBreaker::metrics`] gives the counts.
//! - Closed-state calls take no lock and allocate nothing.
//!
//! No dependencies by default and no async runtime.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cache_breaker::{CallError, CircuitBreaker, MockClock, State};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let clock = MockClock::new();
//! let breaker = CircuitBreaker::builder()
//!     .consecutive_failures(3)
//!     .wait_in_open(Duration::from_secs(10))
//!     .permitted_in_half_open(1)
//!     .clock(clock.clone())
//!     .build()?;
//!
//! // Some async call to a dependency that is down.
//! async fn fetch(ok: bool) -> Result<&'static str, std::io::Error> {
//!     if ok { Ok("pong") } else { Err(std::io::Error::other("connection refused")) }
//! }
//!
//! for _ in 0..3 {
//!     assert!(matches!(breaker.call(fetch(false)).await, Err(CallError::Inner(_))));
//! }
//! assert_eq!(breaker.state(), State::Open);
//!
//! // While open, the dependency is not even called.
//! match breaker.call(fetch(true)).await {
//!     Err(CallError::Rejected(r)) => assert_eq!(r.retry_after(), Some(Duration::from_secs(10))),
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//!
//! // After the wait, one probe is admitted; its success closes the breaker.
//! clock.advance(Duration::from_secs(10));
//! assert_eq!(breaker.call(fetch(true)).await?, "pong");
//! assert_eq!(breaker.state(), State::Closed);
//! # Ok(())
//! # }
//! ```
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tower` | no | [`tower::BreakerLayer`], a `tower::Layer` guarding any `Service` |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod breaker;
mod clock;
mod config;
mod error;
mod state;
mod sync;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
mod window;

pub use breaker::{CircuitBreaker, Metrics, Permit, Transition};
pub use clock::{Clock, MockClock, SystemClock};
pub use config::{CircuitBreakerBuilder, ConfigError, Policy};
pub use error::{CallError, Rejected};
pub use state::{MAX_PERMITTED_PROBES, State};
