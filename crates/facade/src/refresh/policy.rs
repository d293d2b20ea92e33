//! When a hit triggers a background refresh: the policy, validated at build.

use cache_core::ConfigError;
use cache_ttl_jitter::XFetch;

/// When a hit triggers a background refresh (see
/// [`CacheBuilder::refresh_ahead`](crate::CacheBuilder::refresh_ahead)).
///
/// ```
/// use std::time::Duration;
/// use resilient_cache::{Cache, RefreshAhead};
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let prices: Cache<u64, u64> = Cache::builder("prices")
///     .default_ttl(Duration::from_secs(60))
///     .refresh_ahead(RefreshAhead::Threshold(0.2)) // reload in the last 12 s
///     .build()?;
/// let p = prices.get_or_load(7, |id| async move { Some(id * 100) }).await?;
/// assert_eq!(p, Some(700));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RefreshAhead {
    /// Refresh once less than this fraction of the entry's TTL is left
    /// (strictly between 0 and 1; 0.2 = the last fifth of its life).
    Threshold(f64),
    /// XFetch probabilistic early refresh: each read refreshes with probability
    /// `exp(-time_left / (β·δ))`, δ being the measured load time. Readers spread
    /// refreshes of keys expiring together, and slow loads start earlier.
    XFetch(XFetch),
}

/// Which policy fired (the `kind` label of `cache_refreshes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshKind {
    Threshold,
    XFetch,
}

impl RefreshAhead {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match self {
            RefreshAhead::Threshold(f) if !(f.is_finite() && *f > 0.0 && *f < 1.0) => Err(
                ConfigError::new("refresh_ahead", "the threshold must be between 0 and 1"),
            ),
            _ => Ok(()),
        }
    }
}
