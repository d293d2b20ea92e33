//! The size of every shard's *small* queue, adapted to the store's hit rate
//! (a hill climber, as Caffeine sizes its window).
//!
//! Hits and misses are sampled by key hash (a fixed share of keys counts): a
//! hit on a sampled key bumps a counter of its shard's with a plain load and
//! store (no locked instruction; racing readers may lose a count, which a
//! sampled rate tolerates), any other hit pays nothing; a miss is the
//! insert of a key the store did not hold. Every period (ten times the
//! store's capacity in requests, at least 8,192), *small*'s share moves by a
//! step in the direction that last raised the hit rate, and turns back when
//! the rate fell; the step shrinks as it goes and starts over when the rate
//! jumps (the workload changed). The first period only sets the baseline, and
//! while almost nothing hits (a scan, a cold start) the share stays where it
//! is: there is nothing to learn, and a growing *small* would make room by
//! evicting from *main*. Recency-heavy workloads end with a larger *small*
//! (closer to LRU), frequency-heavy ones and loops with a small one. *small*
//! stays between 1 % and 30 % of a shard: beyond that, workloads with
//! periodic scans swing the hit rate enough to walk it far off (measured in
//! `docs/ARCHITECTURE.md`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::shadow::SAMPLE_BITS_AT;

/// *small*'s share of a shard at the start, in per mille.
pub(crate) const START_PERMILLE: u32 = 50;
/// The smallest share *small* climbs down to, in per mille.
const MIN_PERMILLE: f64 = 10.0;
/// The largest share *small* climbs up to, in per mille.
const MAX_PERMILLE: f64 = 300.0;
/// The first step, in per mille.
const FIRST_STEP: f64 = 25.0;
/// How much of the step is left after every period.
const STEP_DECAY: f64 = 0.98;
/// A change of hit rate this large starts the step over.
const RESTART_AT: f64 = 0.05;
/// Below this hit rate there is nothing to learn: the share stays.
const HOLD_BELOW: f64 = 0.001;
/// Requests per period, in multiples of the store's capacity.
const PERIOD_CAPACITIES: u64 = 10;
/// Sampled requests per period: at least this many (keys are sampled more
/// sparsely only as long as a period keeps twice this many requests).
const MIN_SAMPLES: u64 = 4_096;

#[derive(Debug)]
struct State {
    hits_at_start: u64,
    misses_at_start: u64,
    last_rate: f64,
    step: f64,
    permille: f64,
    /// Whether the first period (the baseline) is over.
    started: bool,
}

/// The store-wide climber.
#[derive(Debug)]
pub(crate) struct Climb {
    /// *small*'s share, read by every shard before it evicts.
    permille: AtomicU32,
    misses: AtomicU64,
    /// A key counts when `(hash >> SAMPLE_BITS_AT) & mask == 0`.
    pub(crate) mask: u64,
    /// Sampled requests per period.
    period: u64,
    state: Mutex<State>,
}

impl Climb {
    pub(crate) fn new(capacity: usize) -> Self {
        let requests = (capacity as u64 * PERIOD_CAPACITIES).max(MIN_SAMPLES * 2);
        // Sample one key in 2^k so a period still holds MIN_SAMPLES requests.
        let mut mask = 0u64;
        while mask < 63 && requests / (mask + 1) / 2 >= MIN_SAMPLES {
            mask = mask * 2 + 1;
        }
        Climb {
            permille: AtomicU32::new(START_PERMILLE),
            misses: AtomicU64::new(0),
            mask,
            period: (requests / (mask + 1)).max(1),
            state: Mutex::new(State {
                hits_at_start: 0,
                misses_at_start: 0,
                last_rate: 0.0,
                step: FIRST_STEP,
                permille: f64::from(START_PERMILLE),
                started: false,
            }),
        }
    }

    /// Whether `hash`'s key is one of the sampled ones.
    #[inline]
    pub(crate) fn sampled(&self, hash: u64) -> bool {
        (hash >> SAMPLE_BITS_AT) & self.mask == 0
    }

    /// *small*'s share now, in per mille.
    pub(crate) fn permille(&self) -> u32 {
        self.permille.load(Ordering::Relaxed)
    }

    /// A new key was stored (the miss that led to it); may end a period.
    /// `hits` sums the sampled hits counted so far (each shard counts its own
    /// with a plain load and store, so a sampled hit takes no locked
    /// instruction).
    pub(crate) fn miss(&self, hash: u64, hits: impl FnOnce() -> u64) {
        if !self.sampled(hash) {
            return;
        }
        let misses = self.misses.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(mut s) = self.state.try_lock() else {
            return;
        };
        let hits = hits();
        let (h, m) = (
            hits.saturating_sub(s.hits_at_start),
            misses.saturating_sub(s.misses_at_start),
        );
        if h + m < self.period {
            return;
        }
        let rate = h as f64 / (h + m) as f64;
        let delta = rate - s.last_rate;
        s.hits_at_start = hits;
        s.misses_at_start = misses;
        if !s.started {
            // The first period only sets the baseline.
            s.started = true;
            s.last_rate = rate;
            return;
        }
        if rate < HOLD_BELOW {
            // Nothing hits (a scan, a cold start): no share is better, stay.
            return;
        }
        if delta < 0.0 {
            s.step = -s.step;
        }
        if delta.abs() >= RESTART_AT {
            s.step = FIRST_STEP.copysign(s.step);
        } else {
            s.step *= STEP_DECAY;
        }
        s.last_rate = rate;
        s.permille = (s.permille + s.step).clamp(MIN_PERMILLE, MAX_PERMILLE);
        self.permille
            .store(s.permille.round() as u32, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `periods` periods of a workload whose hit rate is `rate(permille)`;
    /// returns the share *small* ends at.
    fn run(rate: impl Fn(f64) -> f64, periods: usize) -> u32 {
        // Key hash 0 is always sampled.
        let climb = Climb::new(100);
        let mut hits = 0u64;
        for _ in 0..periods {
            let p = rate(f64::from(climb.permille()));
            let requests = climb.period;
            let period_hits = (requests as f64 * p) as u64;
            hits += period_hits;
            for _ in 0..requests - period_hits {
                climb.miss(0, || hits);
            }
        }
        climb.permille()
    }

    #[test]
    fn grows_small_when_a_larger_one_hits_more() {
        let end = run(|permille| 0.3 + permille / 2_000.0, 200);
        assert!(end >= 250, "ended at {end} ‰ (at most {MAX_PERMILLE})");
    }

    #[test]
    fn shrinks_small_when_a_smaller_one_hits_more() {
        let end = run(|permille| 0.7 - permille / 2_000.0, 200);
        assert!(end <= 40, "ended at {end} ‰");
    }

    #[test]
    fn settles_near_the_best_share() {
        // Best at 150 ‰.
        let end = run(|permille| 0.6 - ((permille - 150.0) / 1_000.0).powi(2), 400);
        assert!((100..=200).contains(&end), "ended at {end} ‰");
    }

    #[test]
    fn samples_one_key_in_a_power_of_two_for_large_stores() {
        let climb = Climb::new(1_000_000);
        assert!(climb.mask > 0 && (climb.mask + 1).is_power_of_two());
        assert!(climb.period >= MIN_SAMPLES);
        let sampled = (0..100_000u64)
            .filter(|k| climb.sampled(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .count();
        let expected = 100_000 / (climb.mask as usize + 1);
        assert!(
            sampled > expected / 2 && sampled < expected * 2,
            "{sampled}"
        );
    }
}
