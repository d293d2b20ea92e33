//! Health of a store, as reported by [`Store::health`](crate::Store::health).

use std::time::Duration;

use serde::Serialize;

/// Overall condition of a tier or of the whole cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working normally.
    Healthy,
    /// Working with reduced guarantees (for example L2 down, L1 serving).
    Degraded,
    /// Not able to serve.
    Unhealthy,
}

impl HealthStatus {
    /// `"healthy"`, `"degraded"` or `"unhealthy"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// A store's answer to a health check.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct StoreHealth {
    /// The store's tier name (`"memory"`, `"redis"`, …).
    pub tier: &'static str,
    /// Its condition.
    pub status: HealthStatus,
    /// Round-trip time of the check, for remote stores.
    pub latency: Option<Duration>,
    /// Number of entries held, when cheap to know.
    pub entries: Option<u64>,
    /// Free-form detail (server version, last error, …).
    pub detail: Option<String>,
}

impl StoreHealth {
    /// A report for `tier` with `status` and nothing else filled in.
    #[must_use]
    pub fn new(tier: &'static str, status: HealthStatus) -> Self {
        StoreHealth {
            tier,
            status,
            latency: None,
            entries: None,
            detail: None,
        }
    }

    /// Sets the measured latency.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Sets the entry count.
    #[must_use]
    pub fn with_entries(mut self, entries: u64) -> Self {
        self.entries = Some(entries);
        self
    }

    /// Sets the detail text.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}
