//! [`Group::work_detached`]: flights owned by the work, not by the caller that
//! started it.

use std::future::{Future, poll_fn};
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc as StdArc;
use std::task::Poll;

use crate::flight::{Done, Flight, Wait};
use crate::group::{Group, Outcome, Role, Start, remove_if_current};
use crate::sync::{Arc, Ordering};

/// The future [`Group::work_detached`] hands to its `spawn` function: the work,
/// wrapped so that it publishes its outcome to the flight when it ends.
pub type Detached = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

impl<K, V, E> Group<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// Like [`work`](Self::work), but the flight belongs to the work instead of to
    /// the caller that started it: the work runs as a future given to `spawn` (for
    /// example `|fut| { tokio::spawn(fut); }`), and every caller, the first one
    /// included, waits for its outcome.
    ///
    /// - Cancelling any caller, the first one included, never starts a second
    ///   execution: the flight stays registered until the work ends, so callers
    ///   arriving meanwhile join it, and the work finishes even when nobody waits.
    /// - A first caller that is polled once and then never again does not hold the
    ///   others up (with [`work`](Self::work), it would).
    /// - A panic in the work is caught: every waiting caller gets
    ///   [`FlightError::LeaderPanicked`](crate::FlightError::LeaderPanicked) and
    ///   the payload is dropped (the panic hook has already reported it).
    /// - If the spawned future is dropped before it ends (its executor shut down),
    ///   waiting callers get [`FlightError::Abandoned`](crate::FlightError::Abandoned).
    /// - `spawn` is called at most once, synchronously, during the first poll, and
    ///   only by a caller that starts a flight.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_singleflight::Group;
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let group: Arc<Group<u32, String>> = Arc::new(Group::new());
    /// let call = group.work_detached(7, || async { Ok("seven".to_string()) }, |fut| {
    ///     tokio::spawn(fut);
    /// });
    /// assert_eq!(call.await.into_result().unwrap(), "seven");
    /// # }
    /// ```
    pub async fn work_detached<F, Fut, S>(
        self: &StdArc<Self>,
        key: K,
        work: F,
        spawn: S,
    ) -> Outcome<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        S: FnOnce(Detached),
    {
        let (flight, id, role) = match self.start(&key) {
            Start::Lead(flight) => {
                let id = self.launch(&key, &flight, work, spawn);
                (flight, id, Role::Leader)
            }
            Start::Follow(flight, id) => match self.wait(&key, &flight, id).await {
                Wait::Done(done) => {
                    return Outcome::new(done.into_result(), true, Role::Follower);
                }
                // An inline leader (`work`) was cancelled: this caller runs it, detached.
                Wait::TakeOver => {
                    self.takeovers.fetch_add(1, Ordering::Relaxed);
                    let id = self.launch(&key, &flight, work, spawn);
                    (flight, id, Role::TookOver)
                }
            },
        };
        let result = match self.wait(&key, &flight, id).await {
            Wait::Done(done) => done.into_result(),
            // Unreachable while the detached work holds the flight; if it happens,
            // the flight was given up.
            Wait::TakeOver => {
                self.remove_if_current(&key, &flight);
                flight.finish(|| Done::Abandoned);
                Err(crate::FlightError::Abandoned)
            }
        };
        let shared = flight.joined() > 1;
        Outcome::new(result, shared, role)
    }

    /// Starts the work for `flight` (this caller now leads it) and registers the
    /// caller as a waiter; returns the waiter's id. A panic while *creating* the
    /// work resumes here, in the caller, after the flight is cleaned up.
    fn launch<F, Fut, S>(
        self: &StdArc<Self>,
        key: &K,
        flight: &Arc<Flight<V, E>>,
        work: F,
        spawn: S,
    ) -> u64
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        S: FnOnce(Detached),
    {
        self.executions.fetch_add(1, Ordering::Relaxed);
        let fut = match catch_unwind(AssertUnwindSafe(work)) {
            Ok(fut) => fut,
            Err(payload) => {
                self.panics.fetch_add(1, Ordering::Relaxed);
                self.remove_if_current(key, flight);
                flight.finish(|| Done::Panicked);
                resume_unwind(payload)
            }
        };
        let id = flight.join();
        spawn(Box::pin(run(
            StdArc::clone(self),
            key.clone(),
            Arc::clone(flight),
            fut,
        )));
        id
    }
}

/// The detached future: runs the work, then removes the flight and publishes.
/// The guard is built outside the `async` block, so even a future dropped before
/// its first poll ends the flight (as abandoned).
fn run<K, V, E, Fut>(
    group: StdArc<Group<K, V, E>>,
    key: K,
    flight: Arc<Flight<V, E>>,
    fut: Fut,
) -> impl Future<Output = ()>
where
    K: Hash + Eq + Clone,
    V: Clone,
    Fut: Future<Output = Result<V, E>>,
{
    let mut guard = RunnerGuard {
        group,
        key,
        flight,
        armed: true,
    };
    async move {
        let mut fut = pin!(fut);
        let polled = poll_fn(
            |cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(r)) => Poll::Ready(Some(r)),
                Err(_payload) => Poll::Ready(None),
            },
        )
        .await;
        guard.armed = false;
        let RunnerGuard {
            group, key, flight, ..
        } = &guard;
        group.remove_if_current(key, flight);
        match polled {
            Some(Ok(v)) => flight.finish(|| Done::Value(v)),
            Some(Err(e)) => flight.finish(|| Done::Error(StdArc::new(e))),
            None => {
                group.panics.fetch_add(1, Ordering::Relaxed);
                flight.finish(|| Done::Panicked)
            }
        };
    }
}

/// Ends the flight as abandoned if the detached future is dropped unfinished.
struct RunnerGuard<K: Hash + Eq + Clone, V: Clone, E> {
    group: StdArc<Group<K, V, E>>,
    key: K,
    flight: Arc<Flight<V, E>>,
    armed: bool,
}

impl<K: Hash + Eq + Clone, V: Clone, E> Drop for RunnerGuard<K, V, E> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Lock order everywhere: map, then flight.
        let mut map = self.group.map.lock();
        remove_if_current(&mut map, &self.key, &self.flight);
        self.flight.finish(|| Done::Abandoned);
    }
}
