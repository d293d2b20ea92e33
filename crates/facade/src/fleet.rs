//! Fleet-wide single flight: instances sharing an L2 load a missed key once
//! between them. The first to miss takes a lease in Redis and loads; the others
//! poll L2 for the value it writes, and load themselves only if the lease is given
//! back without a value, its holder dies (the lease expires), or they waited
//! [`FleetFlight::Lease::wait`].

use std::hash::Hash;
use std::time::{Duration, Instant};

use cache_core::{CacheKey, Codec, ConfigError, DecodeKey};
use cache_tiered::{Fence, FleetLease, LeaseOrValue, LoadLease};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::report::metric_names;

/// How instances that share an L2 coordinate loads of the same missed key
/// ([`CacheBuilder::fleet_flight`](crate::CacheBuilder::fleet_flight)).
///
/// On by default when an L2 is configured ([`FleetFlight::DEFAULT`]). Without an
/// L2, or while Redis is unreachable or the breaker is open, each instance loads
/// on its own (local single flight still holds): coordination never turns into an
/// error, and a failing Redis costs at most one operation timeout per attempt.
///
/// ```
/// use std::time::Duration;
/// use resilient_cache::{Cache, FleetFlight};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let users: Cache<u64, String> = Cache::builder("users")
///     .fleet_flight(FleetFlight::Lease {
///         ttl: Duration::from_secs(1),
///         wait: Duration::from_secs(5),
///     })
///     .build()?;
/// # drop(users);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetFlight {
    /// Each instance loads a missed key on its own.
    Off,
    /// The first instance to miss a key takes a lease on it in Redis and loads.
    Lease {
        /// Lease lifetime. The holder extends it every third of this while its
        /// load runs, so a load may take longer; a holder that dies loses it
        /// within this time, and a waiting instance takes over.
        ttl: Duration,
        /// Longest an instance waits for another's load before loading itself.
        wait: Duration,
    },
}

impl FleetFlight {
    /// The default: a 2 s lease (a dead holder delays the fleet at most that
    /// long), waiting at most 10 s for another instance's load.
    pub const DEFAULT: FleetFlight = FleetFlight::Lease {
        ttl: Duration::from_secs(2),
        wait: Duration::from_secs(10),
    };

    pub(crate) fn validate(self) -> Result<Option<(Duration, Duration)>, ConfigError> {
        match self {
            FleetFlight::Off => Ok(None),
            FleetFlight::Lease { ttl, wait } => {
                if ttl < Duration::from_millis(3) {
                    return Err(ConfigError::new(
                        "fleet_flight",
                        "the lease ttl must be at least 3 ms",
                    ));
                }
                if wait.is_zero() {
                    return Err(ConfigError::new(
                        "fleet_flight",
                        "the wait must be greater than zero",
                    ));
                }
                Ok(Some((ttl, wait)))
            }
        }
    }
}

impl Default for FleetFlight {
    fn default() -> Self {
        FleetFlight::DEFAULT
    }
}

/// What a flight leader that missed both tiers does next.
pub(crate) enum Turn<V> {
    /// Load (holding the lease, if one was taken).
    Load(Option<LoadLease>),
    /// Another instance loaded it: the value (`None`: cached as absent).
    Loaded(Option<V>),
}

/// First and longest pause between a waiter's polls of L2.
const FIRST_POLL: Duration = Duration::from_millis(2);
const MAX_POLL: Duration = Duration::from_millis(25);

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Fleet single flight's lease lifetime and longest wait, when it is on and
    /// there is an L2.
    fn fleet(&self) -> Option<(Duration, Duration)> {
        self.inner.tiered.l2()?;
        self.inner.settings.fleet
    }

    /// The lease's lifetime, when fleet single flight is on and there is an L2.
    pub(crate) fn fleet_lease_ttl(&self) -> Option<Duration> {
        self.fleet().map(|(ttl, _)| ttl)
    }

    /// Decides who loads `key` across the fleet: this instance (with a lease, or
    /// locally when no lease is possible), or another one whose value arrives
    /// in L2 while this one waits.
    /// Values read from L2 are kept in L1 only if `key` was not invalidated
    /// after `since`.
    pub(crate) async fn fleet_turn(&self, key: &K, write_l1: bool, since: Fence) -> Turn<V> {
        let Some((ttl, wait)) = self.fleet() else {
            return Turn::Load(None);
        };
        let tiered = &self.inner.tiered;
        let started = Instant::now();
        let mut pause = FIRST_POLL;
        let mut waited = false;
        loop {
            // The lease and a look at L2 in one round trip: a load that finished
            // elsewhere since our miss (or since our last poll) is used as is.
            match tiered.lease_or_value(key, ttl).await {
                LeaseOrValue::Value(entry) => {
                    self.keep_in_l1(key, &entry, write_l1, since);
                    self.fleet_count("waited", cache_tiered::Count::LeaseWaited);
                    self.fleet_waited(started);
                    return Turn::Loaded(entry.into_value());
                }
                LeaseOrValue::Lease(FleetLease::Acquired(lease)) => {
                    if waited {
                        self.fleet_waited(started);
                    }
                    self.fleet_count("acquired", cache_tiered::Count::LeaseAcquired);
                    return Turn::Load(Some(lease));
                }
                LeaseOrValue::Lease(FleetLease::Local) => {
                    self.fleet_count("local", cache_tiered::Count::LeaseLocal);
                    return Turn::Load(None);
                }
                LeaseOrValue::Lease(_) => waited = true,
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                self.fleet_count("timed_out", cache_tiered::Count::LeaseTimedOut);
                self.fleet_waited(started);
                return Turn::Load(None);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(MAX_POLL);
            match tiered.peek_l2(key).await {
                Some(Some(entry)) => {
                    self.keep_in_l1(key, &entry, write_l1, since);
                    self.fleet_count("waited", cache_tiered::Count::LeaseWaited);
                    self.fleet_waited(started);
                    return Turn::Loaded(entry.into_value());
                }
                // Redis stopped answering: stop waiting, load here.
                None => {
                    self.fleet_count("local", cache_tiered::Count::LeaseLocal);
                    return Turn::Load(None);
                }
                // Still loading elsewhere, or the lease was given back or
                // expired without a value: try for the lease again.
                Some(None) => {}
            }
        }
    }

    /// A value another instance loaded, kept in L1 unless the call skips L1's write.
    fn keep_in_l1(&self, key: &K, entry: &cache_core::Entry<V>, write_l1: bool, since: Fence) {
        if write_l1 {
            // A refused backfill (too heavy for L1, or fenced) costs a later
            // L2 read.
            let _ = self
                .inner
                .tiered
                .fill_l1_since(key.clone(), entry.clone(), since);
        }
    }

    pub(crate) fn fleet_count(&self, outcome: &'static str, count: cache_tiered::Count) {
        self.inner.counters.shared.record(count);
        metrics::counter!(metric_names::FLEET_LEASES, "cache" => self.inner.name.clone(), "outcome" => outcome)
            .increment(1);
    }

    fn fleet_waited(&self, started: Instant) {
        metrics::histogram!(metric_names::FLEET_WAIT, "cache" => self.inner.name.clone())
            .record(started.elapsed().as_secs_f64());
    }
}
