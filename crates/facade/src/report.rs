//! In-process statistics, the health report and the metric names.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::HealthStatus;
use cache_store_memory::EvictionReason;
use cache_tiered::{Count, Meters as TierMeters};
use metrics::{Counter, Gauge, Histogram};
use serde::Serialize;

/// Names of the metrics the cache emits through the `metrics` facade; the
/// catalogue with kinds, labels and help texts is [`cache_metrics::CATALOG`].
/// Labels are low-cardinality only: `cache` (the cache name), `tier`, `result`,
/// `outcome`, `kind`, `op`, `reason`, `from`, `to` — never a key.
pub use cache_metrics::names as metric_names;

/// Counters of one cache, readable without any metrics recorder installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from L1 with a fresh value.
    pub l1_hits: u64,
    /// Lookups answered from L2.
    pub l2_hits: u64,
    /// Lookups that had to go to the source (or found nothing, for `get`).
    pub misses: u64,
    /// Stale values served in place of a failed or slow load.
    pub stale_served: u64,
    /// Loader runs.
    pub loads: u64,
    /// Loader runs that failed (error or panic).
    pub load_errors: u64,
    /// Loads that hit the hard (or, with a stale value, the soft) timeout.
    pub load_timeouts: u64,
    /// Callers that joined another caller's load instead of loading.
    pub coalesced: u64,
    /// Errors returned to callers.
    pub errors: u64,
    /// Lookups refused by the bloom guard.
    pub bloom_rejections: u64,
    /// Background refreshes started (refresh-ahead).
    pub refreshes: u64,
    /// Background refreshes that failed (the old value stayed).
    pub refresh_errors: u64,
    /// Entries written (`set`, `set_with`, `set_many`).
    pub writes: u64,
    /// Invalidations (`remove`, `invalidate_tag`, `invalidate_prefix`).
    pub invalidations: u64,
    /// Fleet single flight: missed keys this instance loaded holding the lease.
    pub fleet_leases: u64,
    /// Fleet single flight: missed keys another instance loaded while this one
    /// waited for the value.
    pub fleet_waits: u64,
    /// Fleet single flight: waits that reached their limit (then loaded here).
    pub fleet_wait_timeouts: u64,
    /// Fleet single flight: missed keys loaded without a lease because Redis
    /// could not be asked (unreachable, breaker open).
    pub fleet_local: u64,
}

impl CacheStats {
    /// Hits (L1 + L2) over hits plus misses; 0 when nothing was looked up.
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.l1_hits + self.l2_hits;
        let total = hits + self.misses;
        if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        }
    }
}

/// L1 part of a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct L1Report {
    /// Entries held.
    pub entries: u64,
    /// The entry bound.
    pub max_entries: u64,
    /// Total weight held.
    pub weight: u64,
}

/// L2 part of a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct L2Report {
    /// The L2's own health.
    pub status: HealthStatus,
    /// Whether `PING` answered.
    pub reachable: bool,
    /// `PING` round trip in milliseconds.
    pub latency_ms: Option<f64>,
    /// Breaker state: `closed`, `half_open` or `open`.
    pub breaker: &'static str,
    /// Whether the invalidation bus is connected.
    pub bus_connected: bool,
    /// Writes and invalidations waiting in the recovery queue for Redis.
    pub recovery_pending: u64,
    /// Why the cache is not healthy, when it is not (one line per reason).
    pub reasons: Vec<String>,
    /// Human-readable details (mode, version, role, error).
    pub detail: Option<String>,
}

/// The cache's health: what `/health/cache` serves as JSON.
///
/// `healthy`: every configured tier works. `degraded`: the cache answers (from L1
/// and the loader) but L2 is unreachable or its breaker is not closed, or other
/// instances may not hear of this one's invalidations (the bus is not connected,
/// or writes wait in the recovery queue).
/// `unhealthy`: the cache cannot answer as configured (fail-closed with L2 down).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Cache name.
    pub cache: String,
    /// Overall status.
    pub status: HealthStatus,
    /// `open` or `closed`.
    pub fail_mode: &'static str,
    /// L1 state.
    pub l1: L1Report,
    /// L2 state, if an L2 is configured.
    pub l2: Option<L2Report>,
    /// Hit ratio since start.
    pub hit_ratio: f64,
    /// Counters since start.
    pub stats: CacheStats,
}

/// The cache's counts: L1 hits in a striped counter of their own (the hit path
/// touches nothing shared), everything else in the tiered store's [`Meters`],
/// the one object both layers record into.
pub(crate) struct Counters {
    /// The one counter every L1 hit bumps: striped, so threads do not contend.
    pub(crate) l1_hits: Striped,
    /// Shared with the tiered store underneath.
    pub(crate) shared: Arc<TierMeters>,
}

impl Counters {
    pub(crate) fn new(shared: Arc<TierMeters>) -> Self {
        Counters {
            l1_hits: Striped::default(),
            shared,
        }
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let g = |c: Count| self.shared.get(c);
        CacheStats {
            l1_hits: self.l1_hits.sum(),
            l2_hits: g(Count::RequestL2Hit),
            misses: g(Count::RequestMiss),
            stale_served: g(Count::StaleServed),
            loads: g(Count::Load),
            load_errors: g(Count::LoadError),
            load_timeouts: g(Count::LoadTimeout),
            coalesced: g(Count::Coalesced),
            errors: g(Count::CallerError),
            bloom_rejections: g(Count::BloomRejection),
            refreshes: g(Count::Refresh),
            refresh_errors: g(Count::RefreshError),
            writes: g(Count::Write),
            invalidations: g(Count::Invalidation),
            fleet_leases: g(Count::LeaseAcquired),
            fleet_waits: g(Count::LeaseWaited),
            fleet_wait_timeouts: g(Count::LeaseTimedOut),
            fleet_local: g(Count::LeaseLocal),
        }
    }
}

/// Stripes of a [`Striped`] counter.
const STRIPES: usize = 32;

/// The first this many threads to bump any striped counter own a stripe each
/// (the same one in every counter); later threads share the other stripes.
const OWNED: usize = 16;

/// One stripe, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// A counter that many threads bump at once without fighting over one cache
/// line: each thread adds to its own stripe; reading sums the stripes.
///
/// A thread that owns its stripe (one of the first [`OWNED`] threads) adds
/// with a plain load and store: no other thread writes that stripe, so nothing
/// is lost, and a hit is spared a locked instruction. Threads past those share
/// the remaining stripes and add atomically. Either way the sum is exact.
#[derive(Debug, Default)]
pub(crate) struct Striped([Stripe; STRIPES]);

impl Striped {
    #[inline]
    pub(crate) fn bump(&self) {
        let mine = stripe();
        let cell = &self.0[mine].0;
        if mine < OWNED {
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        } else {
            cell.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

std::thread_local! {
    /// This thread's stripe, `usize::MAX` until it first bumps a counter.
    static STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// This thread's stripe: its own for the first [`OWNED`] threads to ask, then
/// one of the shared ones, round-robin. The lookup inlines into the hit path;
/// only a thread's first bump takes the call that picks its stripe.
#[inline]
fn stripe() -> usize {
    let mine = STRIPE.get();
    if mine != usize::MAX {
        mine
    } else {
        claim_stripe()
    }
}

#[cold]
#[inline(never)]
fn claim_stripe() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) as usize;
    let mine = if n < OWNED {
        n
    } else {
        OWNED + (n - OWNED) % (STRIPES - OWNED)
    };
    STRIPE.set(mine);
    mine
}

/// Metric handles registered once at build time (a hit costs an atomic add when a
/// recorder is installed, nothing otherwise). Install the recorder before building
/// caches.
pub(crate) struct Meters {
    pub(crate) l1_hit: Counter,
    pub(crate) l2_hit: Counter,
    pub(crate) miss: Counter,
    pub(crate) stale_served: Counter,
    pub(crate) coalesced: Counter,
    pub(crate) bloom_rejections: Counter,
    pub(crate) load_ok: Counter,
    pub(crate) load_absent: Counter,
    pub(crate) load_error: Counter,
    pub(crate) load_timeout: Counter,
    pub(crate) load_panic: Counter,
    pub(crate) load_duration: Histogram,
    pub(crate) l1_entries: Gauge,
    pub(crate) l1_max_entries: Gauge,
    pub(crate) l1_weight: Gauge,
    /// Indexed like [`EVICTION_REASONS`].
    pub(crate) evictions: [Counter; 4],
    pub(crate) bus_messages: Counter,
    pub(crate) bus_gaps: Counter,
    pub(crate) bus_publish_errors: Counter,
    pub(crate) bus_connected: Gauge,
    pub(crate) bus_replayed: Counter,
    pub(crate) bus_dropped: Counter,
    /// `corrupt`, `oversized`.
    pub(crate) l2_rejected: [Counter; 2],
    pub(crate) bus_reconnects: Counter,
    pub(crate) fills_fenced: Counter,
    pub(crate) recovery_pending: Gauge,
    pub(crate) recovery_replayed: Counter,
    pub(crate) recovery_dropped: Counter,
    pub(crate) refresh_threshold: Counter,
    pub(crate) refresh_xfetch: Counter,
    pub(crate) refresh_error: Counter,
}

/// The L1 drop reasons exported as `cache_evictions_total{reason}`.
pub(crate) const EVICTION_REASONS: [EvictionReason; 4] = [
    EvictionReason::Capacity,
    EvictionReason::Weight,
    EvictionReason::Expired,
    EvictionReason::Removed,
];

impl Meters {
    pub(crate) fn new(cache: &str) -> Self {
        use metric_names as n;
        let c = cache.to_owned();
        let req = |tier: &'static str, result: &'static str| metrics::counter!(n::REQUESTS, "cache" => c.clone(), "tier" => tier, "result" => result);
        let load = |outcome: &'static str| metrics::counter!(n::LOADS, "cache" => c.clone(), "outcome" => outcome);
        Meters {
            l1_hit: req("l1", "hit"),
            l2_hit: req("l2", "hit"),
            miss: req("source", "miss"),
            stale_served: metrics::counter!(n::STALE_SERVED, "cache" => c.clone()),
            coalesced: metrics::counter!(n::COALESCED, "cache" => c.clone()),
            bloom_rejections: metrics::counter!(n::BLOOM_REJECTIONS, "cache" => c.clone()),
            load_ok: load("ok"),
            load_absent: load("absent"),
            load_error: load("error"),
            load_timeout: load("timeout"),
            load_panic: load("panic"),
            load_duration: metrics::histogram!(n::LOAD_DURATION, "cache" => c.clone()),
            l1_entries: metrics::gauge!(n::L1_ENTRIES, "cache" => c.clone()),
            l1_max_entries: metrics::gauge!(n::L1_MAX_ENTRIES, "cache" => c.clone()),
            l1_weight: metrics::gauge!(n::L1_WEIGHT, "cache" => c.clone()),
            evictions: EVICTION_REASONS.map(
                |r| metrics::counter!(n::EVICTIONS, "cache" => c.clone(), "reason" => r.as_str()),
            ),
            bus_messages: metrics::counter!(n::BUS_MESSAGES, "cache" => c.clone()),
            bus_gaps: metrics::counter!(n::BUS_GAPS, "cache" => c.clone()),
            bus_publish_errors: metrics::counter!(n::BUS_PUBLISH_ERRORS, "cache" => c.clone()),
            bus_connected: metrics::gauge!(n::BUS_CONNECTED, "cache" => c.clone()),
            bus_replayed: metrics::counter!(n::BUS_REPLAYED, "cache" => c.clone()),
            bus_dropped: metrics::counter!(n::BUS_DROPPED, "cache" => c.clone()),
            l2_rejected: ["corrupt", "oversized"].map(|reason| {
                metrics::counter!(n::L2_VALUES_REJECTED, "cache" => c.clone(), "reason" => reason)
            }),
            bus_reconnects: metrics::counter!(n::BUS_RECONNECTS, "cache" => c.clone()),
            fills_fenced: metrics::counter!(n::FILLS_FENCED, "cache" => c.clone()),
            recovery_pending: metrics::gauge!(n::RECOVERY_PENDING, "cache" => c.clone()),
            recovery_replayed: metrics::counter!(n::RECOVERY_REPLAYED, "cache" => c.clone()),
            recovery_dropped: metrics::counter!(n::RECOVERY_DROPPED, "cache" => c.clone()),
            refresh_threshold: metrics::counter!(n::REFRESHES, "cache" => c.clone(), "kind" => "threshold"),
            refresh_xfetch: metrics::counter!(n::REFRESHES, "cache" => c.clone(), "kind" => "xfetch"),
            refresh_error: metrics::counter!(n::REFRESHES, "cache" => c.clone(), "kind" => "error"),
        }
    }
}

/// Something a cache counts. [`Counters::record`] bumps the local counter (what
/// [`CacheStats`] reads) and the metric together, so the two cannot drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A fresh L2 hit.
    L2Hit,
    /// Nothing usable in either tier: the source is asked (or `None` is answered).
    Miss,
    /// A value past its TTL served instead of a failed or slow load.
    StaleServed,
    /// A caller joined another caller's load.
    Coalesced,
    /// The bloom guard answered for a never-seen key.
    BloomRejection,
    /// A call returned an error to its caller.
    CallerError,
    /// A load started (by outcome: one of the next five follows).
    LoadStarted,
    /// A load found a value.
    LoadOk,
    /// A load found nothing (cached as absent).
    LoadAbsent,
    /// A loader failed.
    LoadError,
    /// A loader ran out of time.
    LoadTimeout,
    /// A loader panicked.
    LoadPanic,
    /// A background refresh started, by its trigger.
    RefreshThreshold,
    /// See [`Event::RefreshThreshold`].
    RefreshXFetch,
    /// A background refresh failed.
    RefreshError,
}

impl Counters {
    /// Counts `event` in the shared meters and on its metric.
    pub(crate) fn record(&self, meters: &Meters, event: Event) {
        let (count, metric): (Option<Count>, Option<&Counter>) = match event {
            Event::L2Hit => (Some(Count::RequestL2Hit), Some(&meters.l2_hit)),
            Event::Miss => (Some(Count::RequestMiss), Some(&meters.miss)),
            Event::StaleServed => (Some(Count::StaleServed), Some(&meters.stale_served)),
            Event::Coalesced => (Some(Count::Coalesced), Some(&meters.coalesced)),
            Event::BloomRejection => (Some(Count::BloomRejection), Some(&meters.bloom_rejections)),
            Event::CallerError => (Some(Count::CallerError), None),
            Event::LoadStarted => (Some(Count::Load), None),
            Event::LoadOk => (None, Some(&meters.load_ok)),
            Event::LoadAbsent => (None, Some(&meters.load_absent)),
            Event::LoadError => (Some(Count::LoadError), Some(&meters.load_error)),
            Event::LoadTimeout => (Some(Count::LoadTimeout), Some(&meters.load_timeout)),
            Event::LoadPanic => (Some(Count::LoadError), Some(&meters.load_panic)),
            Event::RefreshThreshold => (Some(Count::Refresh), Some(&meters.refresh_threshold)),
            Event::RefreshXFetch => (Some(Count::Refresh), Some(&meters.refresh_xfetch)),
            Event::RefreshError => (Some(Count::RefreshError), Some(&meters.refresh_error)),
        };
        if let Some(c) = count {
            self.shared.record(c);
        }
        if let Some(m) = metric {
            m.increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More threads than own stripes: the owners' plain adds and the sharers'
    /// atomic adds together lose nothing.
    #[test]
    fn a_striped_counter_is_exact_with_owned_and_shared_stripes() {
        const THREADS: usize = OWNED * 2 + 3;
        const BUMPS: u64 = 20_000;
        let counter = Striped::default();
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| (0..BUMPS).for_each(|_| counter.bump()));
            }
        });
        assert_eq!(counter.sum(), THREADS as u64 * BUMPS);
        let shared: u64 = counter.0[OWNED..]
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum();
        assert!(shared > 0, "some threads went to the shared stripes");
    }
}
