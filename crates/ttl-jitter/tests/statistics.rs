//! Statistical and property tests of jitter and XFetch, at fixed seeds.

use std::convert::Infallible;
use std::time::Duration;

use cache_ttl_jitter::{Jitter, RecomputeTime, XFetch};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{SeedableRng, TryRng};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        (0.0f64..=1.0).prop_map(|r| Jitter::symmetric(r).expect("valid")),
        (0.0f64..=1.0).prop_map(|r| Jitter::below(r).expect("valid")),
        any::<u64>().prop_map(|n| Jitter::absolute(Duration::from_nanos(n))),
    ]
}

proptest! {
    #[test]
    fn every_jittered_ttl_lies_within_its_bounds(
        j in jitter(),
        secs in prop_oneof![0u64..10_000, Just(u64::MAX)],
        nanos in 0u32..1_000_000_000,
        seed in any::<u64>(),
    ) {
        let base = Duration::new(secs, nanos);
        let (lo, hi) = j.bounds(base);
        prop_assert!(lo <= hi);
        if let Jitter::Below { .. } = j {
            prop_assert_eq!(hi, base, "one-sided never exceeds the base");
        }
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..16 {
            let t = j.apply_with(base, &mut rng);
            prop_assert!(lo <= t && t <= hi, "{:?} outside [{:?}, {:?}]", t, lo, hi);
        }
    }
}

#[test]
fn symmetric_jitter_is_uniform_by_chi_square() {
    let mut rng = StdRng::seed_from_u64(2024);
    let j = Jitter::DEFAULT;
    let base = Duration::from_secs(100);
    let (lo, hi) = j.bounds(base);
    let (lo, width) = (lo.as_secs_f64(), (hi - lo).as_secs_f64());
    const BINS: usize = 20;
    const N: usize = 100_000;
    let mut counts = [0usize; BINS];
    for _ in 0..N {
        let x = (j.apply_with(base, &mut rng).as_secs_f64() - lo) / width;
        counts[((x * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let expected = N as f64 / BINS as f64;
    let chi2: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    // 19 degrees of freedom: the 99.9th percentile is 43.8.
    assert!(chi2 < 43.8, "chi-square {chi2} with counts {counts:?}");
    // And it is not degenerate: both ends of the band are reached.
    assert!(counts[0] > 0 && counts[BINS - 1] > 0);
}

/// An RNG that always returns the same word.
struct Fixed(u64);

impl TryRng for Fixed {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.0 >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        dst.fill(self.0 as u8);
        Ok(())
    }
}

#[test]
fn forced_u_values_decide_deterministically() {
    let x = XFetch::default();
    let delta = Duration::from_millis(100);
    let left = Duration::from_secs(1); // 10 δ before expiry
    // random() = max → U = 1 − (1 − 2⁻⁵³) → 0⁺: −ln U ≈ 36.7 > 10: refresh now.
    assert!(x.should_refresh_with(left, delta, &mut Fixed(u64::MAX)));
    // random() = 0 → U = 1: −ln U = 0: never before expiry ...
    assert!(!x.should_refresh_with(Duration::from_nanos(1), delta, &mut Fixed(0)));
    // ... but always at expiry.
    assert!(x.should_refresh_with(Duration::ZERO, delta, &mut Fixed(0)));
    // δ = 0 or β = 0: only at expiry, whatever U.
    assert!(!x.should_refresh_with(
        Duration::from_nanos(1),
        Duration::ZERO,
        &mut Fixed(u64::MAX)
    ));
    let off = XFetch::new(0.0).expect("valid");
    assert!(!off.should_refresh_with(Duration::from_nanos(1), delta, &mut Fixed(u64::MAX)));
    assert!(XFetch::new(-1.0).is_err() && XFetch::new(f64::NAN).is_err());
}

/// Measured early-refresh rate at time-left `t` vs `exp(−t/(β·δ))`.
fn measured_rate(beta: f64, t: Duration, delta: Duration, n: u32, seed: u64) -> f64 {
    let x = XFetch::new(beta).expect("valid");
    let mut rng = StdRng::seed_from_u64(seed);
    let hits = (0..n)
        .filter(|_| x.should_refresh_with(t, delta, &mut rng))
        .count();
    hits as f64 / f64::from(n)
}

#[test]
fn the_early_refresh_rate_matches_the_formula_and_rises_with_beta() {
    let delta = Duration::from_millis(100);
    let n = 200_000;
    let mut previous = 0.0;
    for (i, beta) in [0.5, 1.0, 2.0, 4.0].into_iter().enumerate() {
        for t_ms in [10u64, 50, 100, 200, 400] {
            let t = Duration::from_millis(t_ms);
            let p = XFetch::new(beta).expect("valid").probability(t, delta);
            let got = measured_rate(beta, t, delta, n, 99 + i as u64 * 7 + t_ms);
            // 4.5 standard deviations of a binomial proportion (plus a floor for p ≈ 0).
            let tol = 4.5 * (p * (1.0 - p) / f64::from(n)).sqrt() + 1e-4;
            assert!(
                (got - p).abs() <= tol,
                "β={beta} t={t_ms}ms: measured {got}, expected {p} ± {tol}"
            );
        }
        let at_100 = measured_rate(beta, Duration::from_millis(100), delta, n, 5);
        assert!(at_100 > previous, "the rate rises with β");
        previous = at_100;
    }
}

#[test]
fn recompute_time_is_an_ewma() {
    let d = RecomputeTime::new(0.5);
    assert_eq!(d.get(), Duration::ZERO);
    d.record(Duration::from_millis(100));
    assert_eq!(d.get(), Duration::from_millis(100));
    d.record(Duration::from_millis(300));
    assert_eq!(d.get(), Duration::from_millis(200));
}
