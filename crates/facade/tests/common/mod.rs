//! Helpers shared by the facade's test binaries.
#![allow(dead_code)] // each binary uses its own subset

#[cfg(feature = "tracing")]
pub(crate) mod capture;

use std::time::Duration;

use cache_breaker::MockClock as BreakerClock;
use resilient_cache::Cache;

/// A loader error.
#[derive(Debug)]
pub(crate) struct SourceDown;

impl std::fmt::Display for SourceDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("source is down")
    }
}

impl std::error::Error for SourceDown {}

/// After Redis returned: moves the breaker's clock past its wait and sends one
/// `get_or_load` (keys from `first_key` on) through L2 at a time, until the
/// breaker is closed again. Whether it closed (within 200 rounds).
pub(crate) async fn drive_until_breaker_closes(
    cache: &Cache<u64, String>,
    breaker_clock: &BreakerClock,
    wait_in_open: Duration,
    first_key: u64,
) -> bool {
    let breaker = cache.tiered().breaker().expect("breaker").clone();
    for k in first_key..first_key + 200 {
        breaker_clock.advance(wait_in_open);
        let _ = cache
            .get_or_load(k, |k| async move { Some(format!("v{k}")) })
            .await;
        if breaker.state() == cache_breaker::State::Closed {
            return true;
        }
        // Lets the reconnect finish between rounds (the breaker itself is on
        // the mock clock).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
