//! One flight: the shared state between the caller running the work (the leader)
//! and the callers waiting for it (the followers).

use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Waker};

use crate::sync::Mutex;

/// How a flight ended.
pub(crate) enum Done<V, E> {
    Value(V),
    Error(StdArc<E>),
    Panicked,
    /// Detached work was dropped before it finished (its executor shut down).
    Abandoned,
}

impl<V, E> Done<V, E> {
    /// What a caller that did not run the work receives.
    pub(crate) fn into_result(self) -> Result<V, crate::FlightError<E>> {
        match self {
            Done::Value(v) => Ok(v),
            Done::Error(e) => Err(crate::FlightError::Failed(e)),
            Done::Panicked => Err(crate::FlightError::LeaderPanicked),
            Done::Abandoned => Err(crate::FlightError::Abandoned),
        }
    }
}

impl<V: Clone, E> Clone for Done<V, E> {
    fn clone(&self) -> Self {
        match self {
            Done::Value(v) => Done::Value(v.clone()),
            Done::Error(e) => Done::Error(StdArc::clone(e)),
            Done::Panicked => Done::Panicked,
            Done::Abandoned => Done::Abandoned,
        }
    }
}

struct Waiter {
    id: u64,
    waker: Option<Waker>,
}

struct State<V, E> {
    /// Set once, by the leader that finishes.
    outcome: Option<Done<V, E>>,
    /// True while some caller is running the work.
    leading: bool,
    /// Followers still waiting (each removes itself when it reads the outcome,
    /// takes over, or is dropped).
    waiters: Vec<Waiter>,
    next_id: u64,
}

/// What a waiting follower learns when it is polled.
pub(crate) enum Wait<V, E> {
    Done(Done<V, E>),
    /// The leader went away without finishing: this follower runs the work now.
    TakeOver,
}

pub(crate) struct Flight<V, E> {
    state: Mutex<State<V, E>>,
}

impl<V, E> Flight<V, E> {
    /// A new flight whose creator is its leader.
    pub(crate) fn new() -> Self {
        Flight {
            state: Mutex::new(State {
                outcome: None,
                leading: true,
                waiters: Vec::new(),
                next_id: 0,
            }),
        }
    }

    /// Registers a follower; returns its id. Called under the group's map lock.
    pub(crate) fn join(&self) -> u64 {
        let mut st = self.state.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.waiters.push(Waiter { id, waker: None });
        id
    }

    /// A follower's poll: the outcome, a takeover, or `Pending` with its waker stored.
    pub(crate) fn poll_wait(&self, id: u64, cx: &mut Context<'_>) -> Poll<Wait<V, E>>
    where
        V: Clone,
    {
        let mut st = self.state.lock();
        if let Some(done) = &st.outcome {
            let done = done.clone();
            st.waiters.retain(|w| w.id != id);
            return Poll::Ready(Wait::Done(done));
        }
        if !st.leading {
            st.leading = true;
            st.waiters.retain(|w| w.id != id);
            return Poll::Ready(Wait::TakeOver);
        }
        if let Some(w) = st.waiters.iter_mut().find(|w| w.id == id) {
            match &w.waker {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => w.waker = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }

    /// The leader finished: publish the outcome (only if someone waits for it)
    /// and wake every follower. Returns whether anyone shared the result.
    pub(crate) fn finish(&self, make: impl FnOnce() -> Done<V, E>) -> bool {
        self.step_down(Some(make))
    }

    /// The leader was dropped before finishing. Returns `true` when followers
    /// remain (they are all woken and the first to run takes over) and `false`
    /// when nobody waits, so the flight should leave the map.
    pub(crate) fn abandon(&self) -> bool {
        self.step_down(None::<fn() -> Done<V, E>>)
    }

    /// The leader stops leading, publishing `outcome` if there is one and anyone
    /// waits; every waiter is woken. Returns whether anyone was waiting.
    fn step_down(&self, outcome: Option<impl FnOnce() -> Done<V, E>>) -> bool {
        let mut st = self.state.lock();
        st.leading = false;
        if st.waiters.is_empty() {
            return false;
        }
        if let Some(make) = outcome {
            st.outcome = Some(make());
        }
        for w in &mut st.waiters {
            if let Some(waker) = w.waker.take() {
                waker.wake();
            }
        }
        true
    }

    /// How many callers ever waited on this flight (ids handed out).
    pub(crate) fn joined(&self) -> u64 {
        self.state.lock().next_id
    }

    /// A follower was dropped before it finished. Returns `true` when the flight
    /// is now orphaned (no outcome, no leader, no waiter) and should leave the map.
    pub(crate) fn leave(&self, id: u64) -> bool {
        let mut st = self.state.lock();
        st.waiters.retain(|w| w.id != id);
        st.outcome.is_none() && !st.leading && st.waiters.is_empty()
    }
}
