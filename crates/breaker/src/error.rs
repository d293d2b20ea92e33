//! Errors of calls through the breaker.

use std::fmt;
use std::time::Duration;

use crate::state::State;

/// The breaker refused a call; the dependency was not touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub(crate) state: State,
    pub(crate) retry_after: Option<Duration>,
}

impl Rejected {
    /// The state that refused: `Open`, or `HalfOpen` with every probe slot taken.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// When open: how long until a probe will be admitted.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(d) => write!(f, "circuit breaker is open; next probe in {d:?}"),
            None => f.write_str("circuit breaker is half-open and all probe slots are taken"),
        }
    }
}

impl std::error::Error for Rejected {}

/// The error of [`CircuitBreaker::call`](crate::CircuitBreaker::call).
#[derive(Debug)]
pub enum CallError<E> {
    /// The breaker refused the call.
    Rejected(Rejected),
    /// The call ran and failed with its own error.
    Inner(E),
}

impl<E> CallError<E> {
    /// The call's own error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Inner(e) => Some(e),
            CallError::Rejected(_) => None,
        }
    }

    /// True if the breaker refused the call.
    #[must_use]
    pub fn is_rejected(&self) -> bool {
        matches!(self, CallError::Rejected(_))
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(r) => r.fmt(f),
            CallError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Rejected(r) => Some(r),
            CallError::Inner(e) => Some(e),
        }
    }
}
