//! [`Meters`]: one cache's counters, shared by the tiered store and whatever
//! composes it (the facade), so every count has one home.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a [`Meters`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Count {
    /// A tier read ([`TieredStore::read`](crate::TieredStore::read)) answered by L1.
    TierL1Hit,
    /// A tier read answered by a fresh L2 entry.
    TierL2Hit,
    /// A tier read that found nothing fresh.
    TierMiss,
    /// An L2 call failed with a backend fault (timeouts included).
    L2Error,
    /// Of those, timeouts.
    L2Timeout,
    /// An L2 call skipped because the breaker was open.
    L2Rejected,
    /// An L2 call Redis answered with a refusal (`OOM`, `WRONGTYPE`, an ACL
    /// denial, …): not an outage.
    L2Refused,
    /// A fault absorbed by fail-open.
    FailOpen,
    /// An invalidation from another instance applied to L1.
    BusMessage,
    /// A bus gap handled by the gap policy.
    BusGap,
    /// A publish that failed (queued for replay).
    PublishError,
    /// A queued operation applied to L2 and published after an outage.
    RecoveryReplayed,
    /// A queued operation dropped (queue full, or refused by L2).
    RecoveryDropped,
    /// An entry written through the store's write API (`put`, `put_many`).
    Write,
    /// An invalidation through the store's write API (`remove`, `remove_many`,
    /// `invalidate_tag`, `invalidate_prefix`).
    Invalidation,
    /// A caller's lookup answered by L2 (the facade's view; L1 hits are counted
    /// apart, in a striped counter, to keep the hit path free of shared atomics).
    RequestL2Hit,
    /// A caller's lookup that found nothing fresh.
    RequestMiss,
    /// A stale value served in place of a failed or slow load.
    StaleServed,
    /// A loader run.
    Load,
    /// A loader run that failed (error or panic).
    LoadError,
    /// A loader run that hit its timeout.
    LoadTimeout,
    /// A caller that joined another caller's load.
    Coalesced,
    /// An error returned to a caller.
    CallerError,
    /// A lookup the bloom guard answered.
    BloomRejection,
    /// A background refresh started.
    Refresh,
    /// A background refresh that failed.
    RefreshError,
    /// Fleet single flight: this instance took the load lease and loaded.
    LeaseAcquired,
    /// Fleet single flight: another instance loaded; this one read its value.
    LeaseWaited,
    /// Fleet single flight: waited to the limit, then loaded itself.
    LeaseTimedOut,
    /// Fleet single flight: no lease possible (Redis unreachable, breaker open):
    /// loaded locally.
    LeaseLocal,
    /// A value read from L2 or loaded that was kept out of L1 (or taken back
    /// from L2) because its key was invalidated while it was being read.
    Fenced,
}

impl Count {
    const N: usize = 31;
}

/// One cache's counters: one [`record`](Meters::record) per event, read as
/// snapshots ([`TieredStats`](crate::TieredStats) here, the facade's
/// `CacheStats` above). The tiered store owns it; a composing layer records
/// its own events into the same object through
/// [`TieredStore::meters`](crate::TieredStore::meters).
#[derive(Debug)]
pub struct Meters {
    counts: [AtomicU64; Count::N],
}

impl Default for Meters {
    fn default() -> Self {
        Meters {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Meters {
    /// Counts one `what`.
    pub fn record(&self, what: Count) {
        self.add(what, 1);
    }

    /// Counts `n` of `what`.
    pub fn add(&self, what: Count, n: u64) {
        self.counts[what as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// How many `what` so far.
    #[must_use]
    pub fn get(&self, what: Count) -> u64 {
        self.counts[what as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_has_its_own_slot() {
        let m = Meters::default();
        let all = [
            Count::TierL1Hit,
            Count::TierL2Hit,
            Count::TierMiss,
            Count::L2Error,
            Count::L2Timeout,
            Count::L2Rejected,
            Count::L2Refused,
            Count::FailOpen,
            Count::BusMessage,
            Count::BusGap,
            Count::PublishError,
            Count::RecoveryReplayed,
            Count::RecoveryDropped,
            Count::Write,
            Count::Invalidation,
            Count::RequestL2Hit,
            Count::RequestMiss,
            Count::StaleServed,
            Count::Load,
            Count::LoadError,
            Count::LoadTimeout,
            Count::Coalesced,
            Count::CallerError,
            Count::BloomRejection,
            Count::Refresh,
            Count::RefreshError,
            Count::LeaseAcquired,
            Count::LeaseWaited,
            Count::LeaseTimedOut,
            Count::LeaseLocal,
            Count::Fenced,
        ];
        assert_eq!(all.len(), Count::N);
        for (i, c) in all.iter().enumerate() {
            m.add(*c, i as u64 + 1);
        }
        for (i, c) in all.iter().enumerate() {
            assert_eq!(m.get(*c), i as u64 + 1, "{c:?}");
        }
    }
}
