//! The store-wide pool of entry slots that no shard owns yet.
//!
//! Each shard owns 3/4 of its fair share of `max_entries`; the rest sits here
//! (a quarter: with 1/16, one shard hashed below its quota at 10,000 entries in
//! 16 shards, a 1.6 σ event, was enough to strand slots).
//! A shard that fills its own quota draws a slot before it evicts, and gives
//! slots back as it shrinks, so the store as a whole holds `max_entries` keys
//! however unevenly the hash spreads them.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Of a shard's fair share of entries, the part held back in a common pool
/// (`1 / SPARE_DIVISOR`).
pub(crate) const SPARE_DIVISOR: usize = 4;

/// Entry slots that belong to no shard yet: a shard that fills its own quota
/// draws on these before it evicts, so the store holds `max_entries` even when
/// the hash spreads keys unevenly. On a line of its own: only writers touch it.
#[repr(align(128))]
pub(crate) struct Spare(pub(crate) AtomicUsize);

impl Spare {
    /// Takes one slot; false when none is left.
    pub(crate) fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn give(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}
