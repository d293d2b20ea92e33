//! Graceful shutdown: stop starting background work, drain what is in flight
//! (L2 writes after fail-open loads, the recovery queue) within a deadline, say
//! what could not be finished, and stop listening to the bus.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::{CacheKey, Codec, DecodeKey};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::log::{log_info, log_warn};
use crate::tiered::TieredStore;

/// Background L2 writes in flight, and whether the store is shutting down.
#[derive(Debug, Default)]
pub(crate) struct Background {
    pending: AtomicUsize,
    idle: Notify,
    pub(crate) closing: AtomicBool,
}

/// One background write in flight; dropping it (the write done, failed or
/// cancelled) takes it off the count.
pub(crate) struct InFlight(Arc<Background>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Background {
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.pending.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

/// What [`TieredStore::shutdown`] finished and what it had to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Background L2 writes still in flight at the deadline.
    pub writes_left: usize,
    /// Writes and invalidations still in the recovery queue at the deadline
    /// (Redis unreachable): other instances and L2 never hear of them.
    pub recovery_left: usize,
    /// How long the drain took.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// Whether everything was drained.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.writes_left == 0 && self.recovery_left == 0
    }
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Whether [`shutdown`](Self::shutdown) was called: callers should start
    /// no new background work.
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.inner.background.is_closing()
    }

    /// Runs `work` (an L2 write nobody waits for) as a counted background task,
    /// or inline once the store is shutting down.
    pub(crate) async fn in_background(&self, work: impl Future<Output = ()> + Send + 'static) {
        let background = &self.inner.background;
        if background.is_closing() || tokio::runtime::Handle::try_current().is_err() {
            work.await;
            return;
        }
        let in_flight = background.start();
        tokio::spawn(async move {
            work.await;
            drop(in_flight);
        });
    }

    /// Shuts the store down gracefully: from now on writes after a load go to
    /// L2 before the caller is answered (nothing new is left in the
    /// background); then waits, at most `deadline`, for the background L2
    /// writes in flight and the recovery queue (replayed as soon as Redis
    /// answers) to drain; then stops listening to the bus. The store still
    /// works afterwards (reads, writes), without a bus. Returns what was left.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cache_store_memory::MemoryStore;
    /// # use cache_tiered::TieredStore;
    /// # tokio::runtime::Runtime::new()?.block_on(async move {
    /// let l1 = MemoryStore::<u64, String>::builder().build()?;
    /// let store = TieredStore::builder(l1).build()?;
    /// let report = store.shutdown(Duration::from_secs(5)).await;
    /// assert!(report.is_complete());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).map_err(|e| e.to_string())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let started = Instant::now();
        let inner = &self.inner;
        inner.background.closing.store(true, Ordering::Release);
        inner.recovery_wake.notify_one();
        let drained = async {
            loop {
                let idle = inner.background.idle.notified();
                let mut idle = std::pin::pin!(idle);
                idle.as_mut().enable();
                if inner.background.pending() == 0 && self.recovery_pending() == 0 {
                    return;
                }
                // The queue drains without notifying: look again now and then.
                let _ = tokio::time::timeout(Duration::from_millis(10), idle).await;
            }
        };
        let _ = tokio::time::timeout(deadline, drained).await;
        if let Some(task) = inner.listener.lock().take() {
            task.abort();
        }
        let report = ShutdownReport {
            writes_left: inner.background.pending(),
            recovery_left: self.recovery_pending(),
            elapsed: started.elapsed(),
        };
        if report.is_complete() {
            log_info!(cache = %inner.name, took_ms = report.elapsed.as_millis() as u64, "shut down: background writes and the recovery queue drained");
        } else {
            log_warn!(cache = %inner.name, writes_left = report.writes_left, recovery_left = report.recovery_left, "shut down with work left: Redis did not take it within the deadline");
        }
        report
    }
}
