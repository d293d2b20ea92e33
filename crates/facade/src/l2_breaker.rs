//! The L2 breaker as the facade builds it: the cache's clock drives it, and its
//! transitions become metrics and logs.

use std::sync::Arc;

use cache_breaker::CircuitBreaker;
use cache_core::{Clock, ConfigError};

use crate::log::{log_info, log_warn};
use crate::report::metric_names;

/// The cache's clock as the breaker's monotonic one: breaker time moves exactly
/// as the cache clock does from the moment the cache is built (a mock clock
/// advances both).
#[derive(Debug)]
struct BreakerTime {
    base: std::time::Instant,
    start: cache_core::Timestamp,
    clock: Arc<dyn Clock>,
}

impl cache_breaker::Clock for BreakerTime {
    fn now(&self) -> std::time::Instant {
        self.base + self.clock.now().saturating_duration_since(self.start)
    }
}

/// The L2 breaker, reporting its state and transitions as metrics and logs.
pub(crate) fn breaker_for(
    configured: Option<cache_breaker::CircuitBreakerBuilder>,
    name: &str,
    clock: Option<Arc<dyn Clock>>,
) -> Result<CircuitBreaker, ConfigError> {
    let mut builder = configured.unwrap_or_else(cache_tiered::default_breaker);
    if let Some(clock) = clock
        && !builder.has_clock()
    {
        builder = builder.clock(BreakerTime {
            base: std::time::Instant::now(),
            start: clock.now(),
            clock,
        });
    }
    let label = name.to_owned();
    let gauge = metrics::gauge!(metric_names::BREAKER_STATE, "cache" => label.clone());
    gauge.set(0.0);
    builder
        .name(format!("{name}-l2"))
        .on_transition(move |t| {
            if t.to == cache_breaker::State::Closed {
                log_info!(cache = %label, from = t.from.as_str(), to = t.to.as_str(), "circuit breaker of Redis (L2) closed: L2 is used again");
            } else {
                log_warn!(cache = %label, from = t.from.as_str(), to = t.to.as_str(), "circuit breaker of Redis (L2) changed state: L2 is skipped while open");
            }
            gauge.set(f64::from(t.to.as_gauge()));
            metrics::counter!(
                metric_names::BREAKER_TRANSITIONS,
                "cache" => label.clone(),
                "from" => t.from.as_str(),
                "to" => t.to.as_str()
            )
            .increment(1);
        })
        .build()
        .map_err(|e| ConfigError::new("breaker", e.to_string()))
}
