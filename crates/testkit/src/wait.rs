//! Waiting for real processes and background tasks to catch up.

use std::time::{Duration, Instant};

/// Polls `check` every 10 ms until it holds, for up to 10 s, then panics naming
/// `what`. For conditions that other tasks or processes make true (a subscription
/// connecting, a message arriving) — not for letting time pass: use a mock clock.
///
/// # Panics
///
/// When `check` still fails after 10 s.
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// [`eventually`] for a check that must await (a Redis round trip, a publish):
/// polls `check` every 10 ms until it holds, for up to 10 s, then panics naming
/// `what`.
///
/// # Panics
///
/// When `check` still fails after 10 s.
pub async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
