//! Async request coalescing ("singleflight"): when many callers ask for the same
//! key at once, one of them runs the work and all of them get its result.
//!
//! This is the cache's protection against *breakdown* (a hot key expires and a
//! thousand requests hit the source at once). It stands alone: no dependencies,
//! no async runtime, any executor.
//!
//! # Example: 1,000 concurrent callers, one execution
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use cache_singleflight::Group;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let group: Arc<Group<&'static str, String>> = Arc::new(Group::new());
//! let runs = Arc::new(AtomicUsize::new(0));
//! let gate = Arc::new(tokio::sync::Notify::new());
//!
//! let callers: Vec<_> = (0..1_000)
//!     .map(|_| {
//!         let (group, runs, gate) = (group.clone(), runs.clone(), gate.clone());
//!         tokio::spawn(async move {
//!             group
//!                 .work("user:42", || async move {
//!                     runs.fetch_add(1, Ordering::SeqCst);
//!                     gate.notified().await; // hold the flight open until all joined
//!                     Ok("Ada".to_string())
//!                 })
//!                 .await
//!         })
//!     })
//!     .collect();
//!
//! // Open the gate once the other 999 callers have joined the flight.
//! while group.stats().joins < 999 {
//!     tokio::task::yield_now().await;
//! }
//! gate.notify_one();
//!
//! for caller in callers {
//!     let outcome = caller.await.unwrap();
//!     assert!(outcome.is_shared());
//!     assert_eq!(outcome.into_result().unwrap(), "Ada");
//! }
//! assert_eq!(runs.load(Ordering::SeqCst), 1);
//! assert_eq!(group.stats().executions, 1);
//! assert_eq!(group.in_flight(), 0); // not a cache: the next call runs again
//! # }
//! ```
//!
//! # Contract
//!
//! - One execution per key at a time; callers arriving meanwhile share its result
//!   (`V: Clone`). Once the flight ends, the next call runs the work again.
//! - [`Outcome::is_shared`] says whether the result went to more than one caller.
//! - An error reaches every caller of the flight as the same `Arc<E>`; it is never kept.
//! - Keys are independent; the group's lock is held only to join or leave a flight.
//! - [`Group::forget`] makes the next caller start a new flight; the old flight
//!   finishing never removes the new one.
//! - A panic in the work resumes in the caller that ran it, payload intact;
//!   waiting callers get [`FlightError::LeaderPanicked`]; the flight is removed.
//! - Cancellation: if the caller running the work is dropped, exactly one waiting
//!   caller takes over (one more execution, not one per waiter); if every caller
//!   is dropped, nothing is left behind. A dropped waiter affects no one.
//! - Detached flights: [`Group::work_detached`] runs the work as a future handed
//!   to a spawn function of your executor, so the flight belongs to the work, not
//!   to a caller. Cancelling any caller (the first one included) never starts a
//!   second execution; callers arriving while it runs join it.
//! - Lazy: a call registers nothing until its future is first polled.
//!
//! # Two ways to wait forever, and how to avoid them
//!
//! - **A leader held but not polled.** With [`Group::work`], the caller that
//!   starts a flight *is* the work: if its future is polled once and then kept
//!   without being polled (stored in a struct, parked behind a `select!` branch
//!   that is never taken again), the work makes no progress and every caller that
//!   joined waits as long as it is held. Dropping it is fine (a waiter takes
//!   over); holding it is not. [`Group::work_detached`] does not have this
//!   problem: the work runs on the executor whatever its callers do.
//! - **A recursive call on the same key.** Work that, directly or through other
//!   calls, asks the same group for its own key joins its own flight and waits
//!   for itself: a deadlock, in both modes. The group cannot see it (it has no
//!   notion of tasks); bound such work with a timeout, or give the inner call a
//!   different key or group.
//! - Observable: [`Group::in_flight`] and [`Group::stats`] (executions, joins,
//!   takeovers, panics).
//!
//! # Crate features
//!
//! None. The synchronization is checked with [loom](https://docs.rs/loom) under
//! `RUSTFLAGS="--cfg cache_loom"` (`cargo xtask test` runs the models).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod detached;
mod error;
mod flight;
mod group;
mod sync;

pub use detached::Detached;
pub use error::FlightError;
pub use group::{Group, Outcome, Role, Stats};
