//! Fleet-wide single flight, the tier's part: the load lease in L2, through the
//! breaker like every other L2 call, never an error for the caller.

use std::hash::Hash;
use std::time::Duration;

use cache_core::{CacheKey, Codec, DecodeKey, Entry};
use cache_store_redis::{LeaseAttempt, LoadLease};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::guard::L2Op;
use crate::tiered::TieredStore;

/// What a flight leader that missed both tiers may do, fleet-wide
/// ([`TieredStore::try_lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetLease {
    /// This instance holds the load lease: load, then write with
    /// [`TieredStore::write_back_leased`], which gives the lease back.
    Acquired(LoadLease),
    /// Another instance is loading the key: wait for its value in L2 (and try
    /// again for the lease if it is given back without one).
    Held,
    /// No lease is possible (no L2, breaker open, Redis failing or refusing, a key
    /// whose slot no lease key can share): load locally.
    Local,
}

/// What [`TieredStore::lease_or_value`] found.
#[derive(Debug)]
pub enum LeaseOrValue<V> {
    /// No fresh value in L2: what the lease attempt gave.
    Lease(FleetLease),
    /// L2 holds a fresh value (another instance's load just finished): no lease
    /// is held. Not backfilled into L1: the caller's route decides.
    Value(Entry<V>),
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Tries to take the lease on loading `key` for `ttl`: one L2 round trip
    /// through the breaker, bounded by the operation timeout. Every fault or
    /// refusal reads as [`FleetLease::Local`] (counted like any L2 fault), in
    /// either fail mode: coordination is an optimisation, never a reason to fail.
    pub async fn try_lease(&self, key: &K, ttl: Duration) -> FleetLease {
        match self.guarded(L2Op::Lease, |l2| l2.try_lease(key, ttl)).await {
            Ok(Some(LeaseAttempt::Acquired(lease))) => FleetLease::Acquired(lease),
            Ok(Some(LeaseAttempt::Held)) => FleetLease::Held,
            _ => FleetLease::Local,
        }
    }

    /// [`try_lease`](Self::try_lease) for an instance that missed: takes the
    /// lease and reads the entry in one round trip, so a load another instance
    /// finished between this one's miss and its lease attempt is used, not
    /// repeated. A lease taken when a fresh value turned up is given back.
    pub async fn lease_or_value(&self, key: &K, ttl: Duration) -> LeaseOrValue<V> {
        let found = self
            .guarded(L2Op::Lease, |l2| l2.try_lease_reading::<K, V>(key, ttl))
            .await;
        let Ok(Some((attempt, entry))) = found else {
            return LeaseOrValue::Lease(FleetLease::Local);
        };
        let now = self.l1().clock().recent();
        if let Some(e) = entry.filter(|e| e.is_fresh(now) && !self.is_cleared(e)) {
            if let LeaseAttempt::Acquired(lease) = attempt {
                self.release_lease(lease).await;
            }
            return LeaseOrValue::Value(e);
        }
        LeaseOrValue::Lease(match attempt {
            LeaseAttempt::Acquired(lease) => FleetLease::Acquired(lease),
            LeaseAttempt::Held => FleetLease::Held,
            _ => FleetLease::Local,
        })
    }

    /// Runs `load` while keeping `lease` alive: extended to `ttl` every third of
    /// `ttl`, so a holder that lives keeps the lease however long it loads, and
    /// one that dies loses it within `ttl`.
    pub async fn holding<T>(
        &self,
        lease: Option<&LoadLease>,
        ttl: Duration,
        load: impl std::future::Future<Output = T>,
    ) -> T {
        let Some(lease) = lease else {
            return load.await;
        };
        let mut load = std::pin::pin!(load);
        let every = (ttl / 3).max(Duration::from_millis(1));
        loop {
            tokio::select! {
                done = &mut load => return done,
                () = tokio::time::sleep(every) => {
                    let _ = self
                        .guarded(L2Op::Lease, |l2| l2.extend_lease(lease, ttl))
                        .await;
                }
            }
        }
    }

    /// Reads `key` from L2 for an instance waiting on another's load: a fresh
    /// entry is `Some(Some(_))` (not backfilled: the caller's route decides);
    /// nothing fresh is `Some(None)`; no L2, an open breaker or a fault is
    /// `None` (stop waiting, load locally). Not counted as a tier read: a
    /// waiter polls.
    pub async fn peek_l2(&self, key: &K) -> Option<Option<cache_core::Entry<V>>> {
        let found = self
            .guarded(L2Op::Get, |l2| async move {
                cache_core::Store::<K, V>::get(l2, key).await
            })
            .await
            .ok()??;
        let now = self.l1().clock().recent();
        Some(found.filter(|e| e.is_fresh(now) && !self.is_cleared(e)))
    }

    /// Gives a lease back (best effort: an unreleased lease expires by itself).
    pub async fn release_lease(&self, lease: LoadLease) {
        let _ = self
            .guarded(
                L2Op::Lease,
                |l2| async move { l2.release_lease(&lease).await },
            )
            .await;
    }
}
