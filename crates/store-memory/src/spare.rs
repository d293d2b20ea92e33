//! The store-wide pool of entry slots that no shard owns yet.
//!
//! Each shard owns 3/4 of its fair share of `max_entries`; the rest sits here
//! (a quarter: with 1/16, one shard hashed below its quota at 10,000 entries in
//! 16 shards, a 1.6 σ event, was enough to strand slots).
//! A shard that fills its own quota draws a slot before it evicts, and gives
//! slots back as it shrinks.
//!
//! The pool alone cannot hand out a slot that a shard *owns* but does not fill:
//! with few entries per shard (2,000 entries in 64 shards: 31 each, 24 owned)
//! some shard holds fewer keys than it owns, and those slots would be stranded
//! while another shard evicts. So the pool also counts the shards that hold
//! fewer keys than they own (*lenders*); a shard that finds the pool empty
//! while there are lenders takes one owned slot from one of them
//! (`MemoryStore::borrow`) before it evicts. The store as a whole thus holds
//! `max_entries` keys however unevenly the hash spreads them, short of two
//! things: a lender whose lock is busy at that instant is skipped (one eviction
//! more), and every shard keeps one owned slot so it can always take an entry
//! (so only a shard that holds nothing strands a slot). The count changes
//! only when a shard crosses its owned quota, so a full store (every shard at
//! or over it) and a filling one (every shard under it) write it rarely.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Of a shard's fair share of entries, the part held back in a common pool
/// (`1 / SPARE_DIVISOR`).
pub(crate) const SPARE_DIVISOR: usize = 4;

/// Entry slots that belong to no shard yet, and how many shards could lend
/// owned slots they do not fill. On a line of its own: only writers touch it.
#[repr(align(128))]
pub(crate) struct Spare {
    free: AtomicUsize,
    lenders: AtomicUsize,
}

impl Spare {
    /// `free` slots in the pool, `lenders` shards holding fewer keys than they own.
    pub(crate) const fn new(free: usize, lenders: usize) -> Self {
        Self {
            free: AtomicUsize::new(free),
            lenders: AtomicUsize::new(lenders),
        }
    }

    /// Takes one slot; false when none is left.
    pub(crate) fn take(&self) -> bool {
        self.free
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn give(&self, n: usize) {
        self.free.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether some shard may hold fewer keys than it owns (a hint: the
    /// borrower checks under that shard's lock).
    pub(crate) fn has_lenders(&self) -> bool {
        self.lenders.load(Ordering::Relaxed) > 0
    }

    /// A shard that was (`was`) or is (`is`) a lender changed: counts it in or out.
    pub(crate) fn lender(&self, was: bool, is: bool) {
        match (was, is) {
            (false, true) => {
                self.lenders.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.lenders.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}
