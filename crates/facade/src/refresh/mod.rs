//! Refresh-ahead: hot values are reloaded in the background before they expire,
//! so readers never wait for a load of a key they keep reading.

use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Instant;

use cache_core::{CacheKey, Codec, DecodeKey, Entry, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{Cache, CacheInner};
use crate::error::Error;
use crate::options::{Decisions, LoadContext, LoadOptions, Shape};
use crate::report::Event;
use cache_tiered::{Count, FleetLease};

pub(crate) mod policy;

pub use policy::RefreshAhead;
pub(crate) use policy::RefreshKind;

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Whether a fresh hit on `entry` should start a refresh.
    pub(crate) fn refresh_due(&self, entry: &Entry<V>, now: Timestamp) -> Option<RefreshKind> {
        let policy = self.inner.settings.refresh?;
        // Absent markers are short-lived on purpose; they simply expire.
        if entry.is_absent() {
            return None;
        }
        let left = entry.fresh_ttl(now);
        match policy {
            RefreshAhead::Threshold(f) => (left.as_secs_f64()
                < entry.original_ttl().as_secs_f64() * f)
                .then_some(RefreshKind::Threshold),
            RefreshAhead::XFetch(x) => x
                .should_refresh(left, self.inner.recompute.get())
                .then_some(RefreshKind::XFetch),
        }
    }

    /// Starts the key's background refresh unless one is running. The task holds
    /// no handle to the cache while the loader runs, and the cache aborts it when
    /// its last handle drops.
    pub(crate) fn spawn_refresh<F, Fut, E>(
        &self,
        key: K,
        old: Option<Entry<V>>,
        kind: RefreshKind,
        loader: F,
        options: Option<&LoadOptions>,
    ) where
        F: FnOnce(LoadContext<K, V>) -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.tiered.is_shutting_down() {
            return; // no new background work once shutdown began
        }
        let Ok(shape) = options.map_or_else(
            || Ok(Shape::of(&self.inner.settings)),
            |o| o.shape(&self.inner.settings),
        ) else {
            return; // an invalid tag: the call itself reports it when it misses
        };
        let hard_timeout = options.map_or(self.inner.settings.hard_timeout, |o| {
            o.timeouts(&self.inner.settings).1
        });
        let mut running = self.inner.refreshing.lock();
        if running.contains_key(&key) {
            return;
        }
        // The entry this caller judged may have been replaced since it read it
        // (a refresh that just finished): then there is nothing to refresh.
        if let Some(old) = &old
            && self
                .inner
                .tiered
                .l1()
                .peek_sync(&key)
                .is_some_and(|now| now.fresh_until() > old.fresh_until())
        {
            return;
        }
        let event = match kind {
            RefreshKind::Threshold => Event::RefreshThreshold,
            RefreshKind::XFetch => Event::RefreshXFetch,
        };
        self.inner.counters.record(&self.inner.meters, event);
        let (ctx, decisions) = LoadContext::new(key.clone(), old.clone());
        let fut = loader(ctx);
        let weak = Arc::downgrade(&self.inner);
        let flights = Arc::clone(&self.inner.loads);
        let (flight_key, task_key) = (key.clone(), key.clone());
        let task = runtime.spawn(async move {
            let done = weak.clone();
            // Through singleflight: a load of the same key already running is
            // joined, and misses arriving meanwhile join this refresh.
            let _ = flights
                .work(flight_key.clone(), move || {
                    refresh(weak, flight_key, old, fut, hard_timeout, (shape, decisions))
                })
                .await;
            if let Some(inner) = done.upgrade() {
                inner.refreshing.lock().remove(&task_key);
            }
        });
        running.insert(key, task.abort_handle());
    }
}

/// The refresh itself, as the flight's leader: load, write both tiers (without
/// publishing: this is the same data, newer), count. A failure keeps the old
/// entry, which serves until its stale window ends.
async fn refresh<K, V, C, Fut, E>(
    weak: Weak<CacheInner<K, V, C>>,
    key: K,
    old: Option<Entry<V>>,
    fut: Fut,
    hard_timeout: Option<std::time::Duration>,
    (shape, decisions): (Shape, Arc<parking_lot::Mutex<Decisions>>),
) -> Result<Option<V>, Error>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
    Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    // Once per fleet: the instance holding the key's load lease refreshes it;
    // the others keep their copy (and read the new one from L2 once it expires).
    let (lease, lease_ttl, tiered, since) = {
        let Some(inner) = weak.upgrade() else {
            return Ok(None);
        };
        let cache = Cache { inner };
        // Before the load: an invalidation while it runs keeps its value out.
        let since = cache.inner.tiered.l1().fence();
        let ttl = cache.fleet_lease_ttl();
        let lease = match ttl {
            Some(ttl) => match cache.inner.tiered.try_lease(&key, ttl).await {
                FleetLease::Held => {
                    cache.fleet_count("waited", Count::LeaseWaited);
                    return Ok(old.and_then(Entry::into_value));
                }
                FleetLease::Acquired(lease) => {
                    cache.fleet_count("acquired", Count::LeaseAcquired);
                    Some(lease)
                }
                FleetLease::Local => {
                    cache.fleet_count("local", Count::LeaseLocal);
                    None
                }
            },
            None => None,
        };
        (
            lease,
            ttl.unwrap_or_default(),
            cache.inner.tiered.clone(),
            since,
        )
    };
    let started = Instant::now();
    let load = async {
        match hard_timeout {
            Some(limit) => tokio::time::timeout(limit, fut).await.map_err(|_| limit),
            None => Ok(fut.await),
        }
    };
    let result = tiered.holding(lease.as_ref(), lease_ttl, load).await;
    drop(tiered);
    let took = started.elapsed();
    // No handle left: nobody can read what this refresh would write.
    let Some(inner) = weak.upgrade() else {
        return Ok(None);
    };
    let cache = Cache { inner };
    let inner = &cache.inner;
    inner.counters.record(&inner.meters, Event::LoadStarted);
    inner.meters.load_duration.record(took.as_secs_f64());
    let failed = !matches!(result, Ok(Ok(_)));
    if failed && let Some(lease) = lease.clone() {
        inner.tiered.release_lease(lease).await;
    }
    let failure = match result {
        Ok(Ok(value)) => {
            inner.recompute.record(took);
            cache.count_loaded(value.is_some());
            let shape = shape.decided(&decisions.lock());
            let entry = cache.loaded_entry(&key, value.clone(), &shape);
            // L1 holds the new copy whatever L2 did (faults are counted there).
            let _ = inner
                .tiered
                .write_back_leased(key, entry, lease, since)
                .await;
            return Ok(value);
        }
        Ok(Err(e)) => {
            cache.load_failed();
            Error::Load(Arc::from(e.into()))
        }
        Err(limit) => {
            cache.load_timed_out();
            Error::LoadTimeout(limit)
        }
    };
    inner.counters.record(&inner.meters, Event::RefreshError);
    // Callers that joined this flight get the old value while it lasts.
    let now = inner.clock.now();
    match old {
        Some(e) if e.is_fresh(now) => Ok(e.into_value()),
        other => cache.stale_or(other, failure),
    }
}
