//! What a coalesced call can fail with.

use std::fmt;
use std::sync::Arc;

/// Why a call produced no value.
///
/// The work's own error is shared by every caller of the flight as the same
/// `Arc<E>`; a panic in the work is reported to followers as
/// [`LeaderPanicked`](FlightError::LeaderPanicked) (the leader itself sees the
/// panic resume, with its payload).
#[derive(Debug)]
pub enum FlightError<E> {
    /// The work returned an error; every caller of the flight gets this same `Arc`.
    Failed(Arc<E>),
    /// The caller running the work panicked (or, for
    /// [`work_detached`](crate::Group::work_detached), the work itself did); the
    /// flight produced nothing.
    LeaderPanicked,
    /// Detached work ([`work_detached`](crate::Group::work_detached)) was dropped
    /// before it finished, typically because its executor shut down. The flight
    /// is gone; the next call starts a new one.
    Abandoned,
}

impl<E> Clone for FlightError<E> {
    fn clone(&self) -> Self {
        match self {
            FlightError::Failed(e) => FlightError::Failed(Arc::clone(e)),
            FlightError::LeaderPanicked => FlightError::LeaderPanicked,
            FlightError::Abandoned => FlightError::Abandoned,
        }
    }
}

impl<E> FlightError<E> {
    /// The work's error, if that is what happened.
    #[must_use]
    pub fn failure(&self) -> Option<&Arc<E>> {
        match self {
            FlightError::Failed(e) => Some(e),
            FlightError::LeaderPanicked | FlightError::Abandoned => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for FlightError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlightError::Failed(e) => write!(f, "coalesced work failed: {e}"),
            FlightError::LeaderPanicked => {
                f.write_str("the caller running the coalesced work panicked")
            }
            FlightError::Abandoned => {
                f.write_str("the detached coalesced work was dropped before it finished")
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for FlightError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FlightError::Failed(e) => Some(&**e),
            FlightError::LeaderPanicked | FlightError::Abandoned => None,
        }
    }
}
