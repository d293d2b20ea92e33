//! The facade's error type.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{CacheError, ErrorKind};

/// What a cache call can fail with. Cheap to clone: coalesced callers share one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The cache refused the call (bad input, e.g. an over-long key) or, in
    /// fail-closed mode, the L2 failed.
    Cache(Arc<CacheError>),
    /// The loader failed and no stale value could stand in. Every coalesced caller
    /// gets the same error; [`Error::loader_error`] downcasts it.
    Load(Arc<dyn StdError + Send + Sync>),
    /// The loader did not finish within the hard timeout (and no stale value could
    /// stand in).
    LoadTimeout(Duration),
    /// The loader panicked (and no stale value could stand in).
    LoaderPanicked,
    /// An invalidation rule could not be applied (unknown event or cache, a
    /// field the event lacks). Behind an `Arc` like the other payloads, so an
    /// `Error` stays three words and a `Result` carrying one stays small on the
    /// hit path.
    Rule(Arc<crate::rules::error::RuleError>),
}

impl Error {
    /// The loader's own error, if it is an `E`.
    #[must_use]
    pub fn loader_error<E: StdError + 'static>(&self) -> Option<&E> {
        match self {
            Error::Load(e) => e.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// The cache error's kind, if this is a cache error.
    #[must_use]
    pub fn cache_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Cache(e) => Some(e.kind()),
            _ => None,
        }
    }
}

impl From<CacheError> for Error {
    fn from(e: CacheError) -> Self {
        Error::Cache(Arc::new(e))
    }
}

impl From<crate::rules::error::RuleError> for Error {
    fn from(e: crate::rules::error::RuleError) -> Self {
        Error::Rule(Arc::new(e))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cache(e) => write!(f, "cache error: {e}"),
            Error::Load(e) => write!(f, "loader failed: {e}"),
            Error::LoadTimeout(after) => write!(f, "loader timed out after {after:?}"),
            Error::LoaderPanicked => f.write_str("loader panicked"),
            Error::Rule(e) => write!(f, "invalidation rule: {e}"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Cache(e) => Some(&**e),
            Error::Load(e) => Some(&**e),
            Error::Rule(e) => Some(&**e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    /// Every `get` answers a `Result<Option<V>, Error>`, so the error's size is
    /// paid on every hit: keep each payload behind a pointer or a few words.
    #[test]
    fn an_error_stays_three_words() {
        assert!(size_of::<Error>() <= 24, "{}", size_of::<Error>());
        assert!(size_of::<Result<Option<u64>, Error>>() <= 24);
    }
}
