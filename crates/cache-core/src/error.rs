//! The error types shared by every store and by the facade.

use std::error::Error as StdError;
use std::time::Duration;

/// A boxed error from a backend client (Redis, I/O, …), kept as the source of a
/// [`CacheError::Unavailable`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong inside the cache.
///
/// Match on [`CacheError::kind`] to tell the cases apart without parsing messages:
/// a backend that is down or slow is never confused with bad input or bad configuration.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The backend could not be reached or refused the operation.
    #[error("cache backend `{backend}` is unavailable: {message}")]
    Unavailable {
        /// Which backend (for example `"redis"`).
        backend: &'static str,
        /// What went wrong, in words.
        message: String,
        /// The underlying client error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The server answered but refused the command: out of memory, a value of
    /// another type under the key, a read-only replica, a missing script, …
    /// The server is alive, so this is no outage: a breaker does not count it,
    /// and fail-open absorbs it like a fault.
    #[error("cache backend `{backend}` refused `{op}` ({code}): {message}")]
    Refused {
        /// Which backend (for example `"redis"`).
        backend: &'static str,
        /// The operation (`"get"`, `"put"`, …).
        op: &'static str,
        /// The server's error code (`"OOM"`, `"WRONGTYPE"`, …).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server refused the credentials, or the user lacks a permission (an
    /// ACL). A configuration problem, not an outage.
    #[error(
        "cache backend `{backend}` denied access: {message} (check the user, the password and its ACL)"
    )]
    Denied {
        /// Which backend (for example `"redis"`).
        backend: &'static str,
        /// The server's message.
        message: String,
    },
    /// The operation did not finish within its deadline.
    #[error("cache operation `{op}` timed out after {after:?}")]
    Timeout {
        /// The operation (`"get"`, `"put"`, …).
        op: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// Stored bytes could not be turned back into a value (foreign data, an old
    /// format, truncation). Stores treat this as a miss.
    #[error("stored bytes could not be decoded: {0}")]
    Decode(String),
    /// A value could not be serialized.
    #[error("value could not be encoded: {0}")]
    Encode(String),
    /// The caller passed something the cache refuses; nothing was written.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// The configuration is invalid; reported by `build()`.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The category of a [`CacheError`], for matching and for metric labels.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// See [`CacheError::Unavailable`].
    Unavailable,
    /// See [`CacheError::Timeout`].
    Timeout,
    /// See [`CacheError::Refused`].
    Refused,
    /// See [`CacheError::Denied`].
    Denied,
    /// See [`CacheError::Decode`].
    Decode,
    /// See [`CacheError::Encode`].
    Encode,
    /// See [`CacheError::InvalidInput`].
    InvalidInput,
    /// See [`CacheError::Config`].
    Config,
}

impl ErrorKind {
    /// A short, stable, low-cardinality name (`"unavailable"`, `"timeout"`, …).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Refused => "refused",
            ErrorKind::Denied => "denied",
            ErrorKind::Decode => "decode",
            ErrorKind::Encode => "encode",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Config => "config",
        }
    }
}

impl CacheError {
    /// The category of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            CacheError::Unavailable { .. } => ErrorKind::Unavailable,
            CacheError::Timeout { .. } => ErrorKind::Timeout,
            CacheError::Refused { .. } => ErrorKind::Refused,
            CacheError::Denied { .. } => ErrorKind::Denied,
            CacheError::Decode(_) => ErrorKind::Decode,
            CacheError::Encode(_) => ErrorKind::Encode,
            CacheError::InvalidInput(_) => ErrorKind::InvalidInput,
            CacheError::Config(_) => ErrorKind::Config,
        }
    }

    /// Shorthand for an [`CacheError::Unavailable`] with a source error.
    pub fn unavailable(
        backend: &'static str,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        CacheError::Unavailable {
            backend,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// True for faults of the backend (unavailable or timed out): the kind a
    /// fail-open cache degrades around and a circuit breaker counts.
    #[must_use]
    pub fn is_backend_fault(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// True when the backend answered with a refusal ([`Refused`](Self::Refused),
    /// [`Denied`](Self::Denied)): it is alive, so a breaker must not count this
    /// as an outage, while fail-open still absorbs it.
    #[must_use]
    pub fn is_backend_refusal(&self) -> bool {
        matches!(self.kind(), ErrorKind::Refused | ErrorKind::Denied)
    }
}

/// Input the cache refuses before anything is written.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// A namespace or key prefix breaks the naming rule.
    #[error(
        "invalid namespace {name:?}: {reason} (use 1 to {max} characters from [A-Za-z0-9_.-])",
        max = crate::key::MAX_NAMESPACE_LEN
    )]
    InvalidNamespace {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The encoded key is longer than the configured maximum.
    #[error("key is {len} bytes, over the maximum of {max}; shorten it or raise the key limit")]
    KeyTooLong {
        /// Encoded length in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The value (as weighed or encoded) is larger than the configured maximum.
    #[error("value is {size} bytes, over the maximum of {max}; it was not stored")]
    ValueTooLarge {
        /// Size in bytes (or weight units for the in-memory store).
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A tag breaks the tag rule.
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag {
        /// The rejected tag.
        tag: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

/// An invalid configuration value, reported by a builder's `build()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cache configuration: `{field}` {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    /// A configuration error about `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the offending setting.
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why the value was rejected.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_and_named() {
        let errors = [
            CacheError::unavailable("redis", "connection refused", "io"),
            CacheError::Timeout {
                op: "get",
                after: Duration::from_millis(100),
            },
            CacheError::Decode("truncated".into()),
            CacheError::Encode("bad".into()),
            InvalidInput::KeyTooLong { len: 9, max: 8 }.into(),
            ConfigError::new("max_entries", "must be at least 1").into(),
        ];
        let kinds: Vec<_> = errors.iter().map(CacheError::kind).collect();
        for (i, a) in kinds.iter().enumerate() {
            for b in &kinds[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(errors[0].is_backend_fault());
        assert!(errors[1].is_backend_fault());
        assert!(!errors[4].is_backend_fault());
        assert_eq!(kinds[4].as_str(), "invalid_input");
    }

    #[test]
    fn messages_say_what_to_do() {
        let e: CacheError = ConfigError::new("max_entries", "must be at least 1").into();
        assert_eq!(
            e.to_string(),
            "invalid cache configuration: `max_entries` must be at least 1"
        );
        let e = InvalidInput::KeyTooLong { len: 9, max: 8 };
        assert!(e.to_string().contains("over the maximum of 8"));
    }
}
