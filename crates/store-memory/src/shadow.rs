//! Which admission rule serves this workload better, measured on two
//! miniature copies of the policy (a *miniature simulation*: Waldspurger et
//! al., "Cache Modeling and Optimization using Miniature Simulations", USENIX
//! ATC 2017).
//!
//! A returning candidate takes the place of *main*'s victim only if the
//! sketch has seen it wanted more often (`evict.rs`). That guards *main*
//! against loops and frequency-heavy traces, and costs recency-heavy ones
//! whose working set moves on: with ARC's `P3` trace at 20 % of its keys the
//! gate held 48 % against about 53.5 % when every returning key is admitted, while
//! at 5 % admitting freely fell from 22.7 % to 8.5 %. No ghost-based signal
//! told the two apart (the rates at which rejected and displaced keys came
//! back were alike in both cells), and a hit-rate climber needs more periods
//! than a trace 25 capacities long gives.
//!
//! So a large store keeps two small shards of key hashes, one per rule, fed
//! with the requests for one key in 1,024 (chosen by hash, so each copy sees
//! every request for its keys, like a cache 1,024 times smaller); every four
//! copy-capacities of sampled requests, the rule whose copy hit more (by at
//! least 1 % of the requests) becomes the store's. Free admission does not
//! wait for the window's end when its copy pulls ahead by 5 % of a window:
//! where the gate is wrong it is very wrong (P3's last stretch: the free copy
//! ahead by 30 % of the requests), and deciding a window late missed that
//! stretch in about one seed in eight (P3 at 20 % at 48–49 % instead of
//! 53.6 %; with the early rule, 51.4–55.2 % over sixty seeds). The copies
//! hold at least [`MIN_KEYS`] keys, so only stores of 128 Ki entries and more keep them;
//! smaller ones keep the gate. A sampled request takes the copies' lock only
//! if it is free (`try_lock`), so no reader ever waits on it. The copies keep
//! *small* at its starting share rather than following the store's climber:
//! following it, P3 at 20 % stayed at 48.9 % in two of nine runs (the copies
//! never agreed on a rule), where the fixed share switched in every run.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cache_core::{Entry, Timestamp};
use parking_lot::Mutex;

use crate::shard::{Extras, Hasher, Read, Shard};
use crate::spare::Spare;

/// Where the bits that choose sampled keys start: the climber's too (see
/// `climb.rs`), so a hit can test both with one mask.
pub(crate) const SAMPLE_BITS_AT: u32 = 40;
/// One key in `2^SAMPLE_SHIFT` feeds the copies.
const SAMPLE_SHIFT: u32 = 10;
/// The smallest copy worth keeping: a smaller one mispredicts.
const MIN_KEYS: usize = 128;
/// Sampled requests per decision, in copy capacities.
const WINDOW_CAPACITIES: u64 = 4;
/// The share of a window's requests by which one copy must out-hit the other
/// for the rule to change.
const MARGIN: f64 = 0.01;
/// The lead, as a share of a whole window, by which the free copy opens the
/// gate at once, before the window ends.
const EARLY_MARGIN: f64 = 0.05;
/// How long a copy's entries live: they stand for keys, not values, and an
/// entry written again starts over (under the ~49 days a slot's times keep).
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3_600);

struct Copies {
    /// Admits a returning key only if the sketch favours it (the default).
    gated: Shard<u64, ()>,
    /// Admits every returning key.
    free: Shard<u64, ()>,
    /// Hits of `gated` and `free` in this window.
    hits: [u64; 2],
    requests: u64,
    window: u64,
    /// Copies never borrow slots.
    spare: Spare,
}

/// The two copies and the rule they chose, for one store.
pub(crate) struct Shadow {
    copies: Mutex<Copies>,
    hasher: Hasher,
    /// A key is sampled when `(hash >> SAMPLE_BITS_AT) & mask == 0`.
    pub(crate) mask: u64,
    free: AtomicBool,
}

impl Shadow {
    /// Copies for a store of `capacity` entries; `None` for a store too small
    /// to keep copies of [`MIN_KEYS`] keys.
    pub(crate) fn for_capacity(capacity: usize) -> Option<Self> {
        let keys = capacity >> SAMPLE_SHIFT;
        (keys >= MIN_KEYS).then(|| Shadow::new(keys, (1 << SAMPLE_SHIFT) - 1))
    }

    fn new(keys: usize, mask: u64) -> Self {
        let hasher = crate::seed::hasher();
        let copy = |free_admission| {
            let mut c = Shard::new(keys, keys, u64::MAX, Extras::default(), hasher.clone());
            c.free_admission = free_admission;
            c
        };
        Shadow {
            copies: Mutex::new(Copies {
                gated: copy(false),
                free: copy(true),
                hits: [0; 2],
                requests: 0,
                window: keys as u64 * WINDOW_CAPACITIES,
                spare: Spare::new(0, 0),
            }),
            hasher,
            mask,
            free: AtomicBool::new(false),
        }
    }

    /// Whether the key behind `hash` feeds the copies.
    #[inline]
    fn sampled(&self, hash: u64) -> bool {
        (hash >> SAMPLE_BITS_AT) & self.mask == 0
    }

    /// A request the store served (a hit, or the insert after a miss): fed
    /// to the copies if its key is sampled.
    #[inline]
    pub(crate) fn offer(&self, hash: u64, now: Timestamp) {
        if self.sampled(hash) {
            self.request(hash, now);
        }
    }

    /// Whether the store should admit every returning key.
    pub(crate) fn free_admission(&self) -> bool {
        self.free.load(Ordering::Relaxed)
    }

    /// A request for a sampled key: each copy reads it and, on a miss, stores
    /// it. Skipped if another thread is feeding the copies.
    fn request(&self, hash: u64, now: Timestamp) {
        let Some(mut copies) = self.copies.try_lock() else {
            return;
        };
        let copies = &mut *copies;
        let h = self.hasher.hash_one(hash);
        for (i, copy) in [&mut copies.gated, &mut copies.free]
            .into_iter()
            .enumerate()
        {
            if matches!(copy.read_fresh(h, &hash, now), Read::Hit(_)) {
                copies.hits[i] += 1;
            } else {
                let entry = Entry::new((), now, LIFETIME);
                copy.put(h, hash, entry, (1, now), &copies.spare, || false);
            }
        }
        copies.requests += 1;
        let [gated, free] = copies.hits;
        if free > gated + (copies.window as f64 * EARLY_MARGIN) as u64
            && !self.free.load(Ordering::Relaxed)
        {
            // The gate is failing badly right now: do not wait for the window's end.
            self.free.store(true, Ordering::Relaxed);
        }
        if copies.requests >= copies.window {
            let margin = (copies.requests as f64 * MARGIN) as u64;
            if free > gated + margin {
                self.free.store(true, Ordering::Relaxed);
            } else if gated > free + margin {
                self.free.store(false, Ordering::Relaxed);
            }
            copies.hits = [0; 2];
            copies.requests = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shadow sampling every key, with copies of `keys` keys.
    fn shadow(keys: usize) -> Shadow {
        Shadow::new(keys, 0)
    }

    fn feed(s: &Shadow, keys: impl IntoIterator<Item = u64>) {
        for k in keys {
            s.request(
                k.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                Timestamp::from_millis(1_000),
            );
        }
    }

    #[test]
    fn only_large_stores_keep_copies() {
        assert!(Shadow::for_capacity(100_000).is_none());
        let s = Shadow::for_capacity(1 << 20).expect("a million entries keep copies");
        let sampled = (0..1_000_000u64)
            .filter(|k| s.sampled(k.wrapping_mul(0x2545_F491_4F6C_DD1D)))
            .count();
        assert!(
            (500..2_000).contains(&sampled),
            "{sampled} of a million sampled"
        );
    }

    #[test]
    fn a_loop_bigger_than_the_cache_keeps_the_gate() {
        let s = shadow(200);
        // A loop over 300 keys: admitting freely churns main and hits nothing.
        feed(&s, (0..50_000u64).map(|i| i % 300));
        assert!(!s.free_admission());
    }

    /// Keys in blocks of 10, each requested four times, 160 other keys apart:
    /// the working set moves on before a key has been wanted often.
    fn moving(from: u64, rounds: u64) -> impl Iterator<Item = u64> {
        (0..rounds).flat_map(move |r| {
            [0u64, 4, 8, 12]
                .into_iter()
                .filter(move |&back| back <= r)
                .flat_map(move |back| (0..10).map(move |i| from + (r - back) * 10 + i))
        })
    }

    #[test]
    fn a_clear_lead_of_free_admission_opens_the_gate_before_the_window_ends() {
        let s = shadow(200);
        // One window (4 × 200 requests) of keys that fit both copies: a tie,
        // the gate stays.
        feed(&s, (0..800u64).map(|i| i % 150));
        assert!(!s.free_admission());
        // Then fewer requests than a window, so only the early rule can
        // decide: a working set that moves on, which the gate serves badly.
        feed(&s, moving(10_000, 2_000).take(780));
        assert_eq!(s.copies.lock().requests, 780, "no window ended");
        assert!(
            s.free_admission(),
            "free admission should have won within the window"
        );
    }

    #[test]
    fn a_moving_working_set_opens_the_gate_and_a_loop_closes_it_again() {
        let s = shadow(200);
        feed(&s, moving(0, 2_000));
        assert!(s.free_admission(), "free admission should have won");
        feed(&s, (0..50_000u64).map(|i| 1_000_000 + i % 300));
        assert!(!s.free_admission(), "a loop should bring the gate back");
    }
}
