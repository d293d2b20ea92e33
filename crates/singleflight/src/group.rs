//! [`Group`]: the map of flights in progress and the coalescing call.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;
use std::sync::Arc as StdArc;
use std::task::Poll;

use crate::error::FlightError;
use crate::flight::{Done, Flight, Wait};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// Which part a caller played in its flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Started the flight and ran the work.
    Leader,
    /// Joined a flight in progress and received its result.
    Follower,
    /// Joined a flight whose leader was cancelled, and ran the work in its place.
    TookOver,
}

/// The result of one call, with how it was obtained.
#[derive(Debug)]
pub struct Outcome<V, E> {
    result: Result<V, FlightError<E>>,
    shared: bool,
    role: Role,
}

impl<V, E> Outcome<V, E> {
    pub(crate) fn new(result: Result<V, FlightError<E>>, shared: bool, role: Role) -> Self {
        Outcome {
            result,
            shared,
            role,
        }
    }

    /// The value or the shared error.
    pub fn into_result(self) -> Result<V, FlightError<E>> {
        self.result
    }

    /// The value or the shared error, by reference.
    pub fn result(&self) -> &Result<V, FlightError<E>> {
        &self.result
    }

    /// True when more than one caller received this result (Go's `shared`).
    #[must_use]
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The part this caller played.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }
}

/// Counters of a [`Group`], for "calls saved" style reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Times the work actually ran (leaders plus takeovers).
    pub executions: u64,
    /// Calls that joined a flight in progress instead of running the work.
    pub joins: u64,
    /// Followers that ran the work because their leader was cancelled.
    pub takeovers: u64,
    /// Flights whose work panicked.
    pub panics: u64,
}

/// Coalesces concurrent calls by key: while a call for a key is running, later
/// calls for the same key wait for it and receive a clone of its result.
///
/// It is not a cache: once a flight ends, the next call for the key runs again.
/// See the [crate docs](crate) for the full contract.
pub struct Group<K, V, E = std::convert::Infallible> {
    pub(crate) map: Mutex<HashMap<K, Arc<Flight<V, E>>>>,
    pub(crate) executions: AtomicU64,
    joins: AtomicU64,
    pub(crate) takeovers: AtomicU64,
    pub(crate) panics: AtomicU64,
}

impl<K, V, E> fmt::Debug for Group<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("in_flight", &self.map.lock().len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<K, V, E> Default for Group<K, V, E> {
    fn default() -> Self {
        Group {
            map: Mutex::new(HashMap::new()),
            executions: AtomicU64::new(0),
            joins: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            panics: AtomicU64::new(0),
        }
    }
}

impl<K, V, E> Group<K, V, E> {
    /// An empty group.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Flights in progress.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.map.lock().len()
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        Stats {
            executions: self.executions.load(Ordering::Relaxed),
            joins: self.joins.load(Ordering::Relaxed),
            takeovers: self.takeovers.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
        }
    }
}

pub(crate) enum Start<V, E> {
    Lead(Arc<Flight<V, E>>),
    Follow(Arc<Flight<V, E>>, u64),
}

impl<K, V, E> Group<K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// Runs `work` for `key`, unless a call for `key` is already running, in which
    /// case this call waits for that one and gets a clone of its result.
    ///
    /// - Nothing is registered until the returned future is first polled.
    /// - If the caller running the work is dropped (cancelled), one waiting caller
    ///   takes over and runs its own `work`; if every caller is dropped, the flight
    ///   is removed and the next call starts afresh.
    /// - If `work` panics, the panic resumes in the caller that ran it (payload
    ///   intact) and every waiting caller gets [`FlightError::LeaderPanicked`].
    /// - An error from `work` reaches every caller as the same `Arc<E>`.
    pub async fn work<F, Fut>(&self, key: K, work: F) -> Outcome<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        match self.start(&key) {
            Start::Lead(flight) => self.lead(&key, &flight, work, Role::Leader).await,
            Start::Follow(flight, id) => match self.wait(&key, &flight, id).await {
                Wait::Done(done) => Outcome {
                    result: done.into_result(),
                    shared: true,
                    role: Role::Follower,
                },
                Wait::TakeOver => {
                    self.takeovers.fetch_add(1, Ordering::Relaxed);
                    self.lead(&key, &flight, work, Role::TookOver).await
                }
            },
        }
    }

    /// Waits on `flight` as the registered waiter `id` until it ends or is handed
    /// over; a dropped wait removes the waiter (and an orphaned flight).
    pub(crate) async fn wait(&self, key: &K, flight: &Arc<Flight<V, E>>, id: u64) -> Wait<V, E> {
        let mut guard = FollowerGuard {
            group: self,
            key,
            flight,
            id,
            armed: true,
        };
        let wait = poll_fn(|cx| flight.poll_wait(id, cx)).await;
        // Reading the outcome or taking over already removed us as a waiter.
        guard.armed = false;
        wait
    }

    /// Joins the flight for `key` or starts one.
    pub(crate) fn start(&self, key: &K) -> Start<V, E> {
        let mut map = self.map.lock();
        if let Some(flight) = map.get(key) {
            let flight = Arc::clone(flight);
            let id = flight.join();
            drop(map);
            self.joins.fetch_add(1, Ordering::Relaxed);
            return Start::Follow(flight, id);
        }
        let flight = Arc::new(Flight::new());
        map.insert(key.clone(), Arc::clone(&flight));
        Start::Lead(flight)
    }

    /// Runs the work as the flight's leader and publishes the outcome.
    async fn lead<F, Fut>(
        &self,
        key: &K,
        flight: &Arc<Flight<V, E>>,
        work: F,
        role: Role,
    ) -> Outcome<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        self.executions.fetch_add(1, Ordering::Relaxed);
        let mut guard = LeaderGuard {
            group: self,
            key,
            flight,
            armed: true,
        };
        let polled = match catch_unwind(AssertUnwindSafe(work)) {
            Err(payload) => Err(payload),
            Ok(fut) => {
                let mut fut = pin!(fut);
                poll_fn(
                    |cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                        Ok(Poll::Pending) => Poll::Pending,
                        Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
                        Err(payload) => Poll::Ready(Err(payload)),
                    },
                )
                .await
            }
        };
        guard.armed = false;
        drop(guard);
        self.remove_if_current(key, flight);
        match polled {
            Ok(Ok(v)) => {
                let shared = flight.finish(|| Done::Value(v.clone()));
                Outcome {
                    result: Ok(v),
                    shared,
                    role,
                }
            }
            Ok(Err(e)) => {
                let e = StdArc::new(e);
                let shared = flight.finish(|| Done::Error(StdArc::clone(&e)));
                Outcome {
                    result: Err(FlightError::Failed(e)),
                    shared,
                    role,
                }
            }
            Err(payload) => {
                self.panics.fetch_add(1, Ordering::Relaxed);
                flight.finish(|| Done::Panicked);
                resume_unwind(payload)
            }
        }
    }

    /// Removes `key`'s flight from the map if it is still `flight` (after a
    /// [`forget`](Self::forget) a newer flight may stand there).
    pub(crate) fn remove_if_current(&self, key: &K, flight: &Arc<Flight<V, E>>) {
        remove_if_current(&mut self.map.lock(), key, flight);
    }

    /// Forgets the flight in progress for `key`: the next call starts a new one.
    /// Callers already waiting still get the old flight's result, and the old
    /// flight finishing does not remove the new one. Returns whether a flight was
    /// forgotten.
    pub fn forget(&self, key: &K) -> bool {
        self.map.lock().remove(key).is_some()
    }
}

/// Removes `key` from the (locked) map if it still maps to `flight`.
pub(crate) fn remove_if_current<K: Hash + Eq, V, E>(
    map: &mut HashMap<K, Arc<Flight<V, E>>>,
    key: &K,
    flight: &Arc<Flight<V, E>>,
) {
    if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
        map.remove(key);
    }
}

/// Undoes a leader's registration if its future is dropped before the work ends.
struct LeaderGuard<'a, K: Hash + Eq + Clone, V: Clone, E> {
    group: &'a Group<K, V, E>,
    key: &'a K,
    flight: &'a Arc<Flight<V, E>>,
    armed: bool,
}

impl<K: Hash + Eq + Clone, V: Clone, E> Drop for LeaderGuard<'_, K, V, E> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Lock order everywhere: map, then flight.
        let mut map = self.group.map.lock();
        if !self.flight.abandon() {
            remove_if_current(&mut map, self.key, self.flight);
        }
    }
}

/// Removes a follower that is dropped while waiting.
struct FollowerGuard<'a, K: Hash + Eq + Clone, V: Clone, E> {
    group: &'a Group<K, V, E>,
    key: &'a K,
    flight: &'a Arc<Flight<V, E>>,
    id: u64,
    armed: bool,
}

impl<K: Hash + Eq + Clone, V: Clone, E> Drop for FollowerGuard<'_, K, V, E> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut map = self.group.map.lock();
        if self.flight.leave(self.id) {
            remove_if_current(&mut map, self.key, self.flight);
        }
    }
}
