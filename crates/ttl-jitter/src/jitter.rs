//! [`Jitter`]: spreading expiry times so keys written together do not expire together.

use std::fmt;
use std::time::Duration;

use rand::{Rng, RngExt};

const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Ratios are kept as parts per billion, so the arithmetic is exact integers.
const PPB: u128 = 1_000_000_000;

/// A ratio outside `[0, 1]` (or not a number) was given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidRatio(pub f64);

impl fmt::Display for InvalidRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "jitter ratio {} is outside [0, 1]", self.0)
    }
}

impl std::error::Error for InvalidRatio {}

/// How a TTL is randomized. Every result lies within [`Jitter::bounds`], with
/// nanosecond precision and saturating arithmetic (a base near `Duration::MAX`
/// never panics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// The TTL as given.
    None,
    /// Uniform in `[base × (1 − r), base × (1 + r)]`; the ratio in parts per billion.
    Symmetric {
        /// `r × 10⁹`.
        ppb: u32,
    },
    /// Uniform in `[base × (1 − r), base]`: never above the base, for hard maximums.
    Below {
        /// `r × 10⁹`.
        ppb: u32,
    },
    /// Uniform in `[base − d, base + d]` (clamped at zero).
    Absolute(Duration),
}

fn to_ppb(ratio: f64) -> Result<u32, InvalidRatio> {
    if (0.0..=1.0).contains(&ratio) {
        // In [0, 1e9]: fits u32.
        Ok((ratio * PPB as f64).round() as u32)
    } else {
        Err(InvalidRatio(ratio))
    }
}

impl Jitter {
    /// The seed default: ±20 %, i.e. × [0.8, 1.2].
    pub const DEFAULT: Jitter = Jitter::Symmetric { ppb: 200_000_000 };

    /// ±`ratio`; a ratio outside `[0, 1]` (or NaN) is rejected.
    pub fn symmetric(ratio: f64) -> Result<Self, InvalidRatio> {
        to_ppb(ratio).map(|ppb| Jitter::Symmetric { ppb })
    }

    /// Up to `ratio` below the base, never above; a ratio outside `[0, 1]` is rejected.
    pub fn below(ratio: f64) -> Result<Self, InvalidRatio> {
        to_ppb(ratio).map(|ppb| Jitter::Below { ppb })
    }

    /// ±`d`, clamped at zero.
    #[must_use]
    pub fn absolute(d: Duration) -> Self {
        Jitter::Absolute(d)
    }

    /// The inclusive range a jittered `base` falls in.
    #[must_use]
    pub fn bounds(&self, base: Duration) -> (Duration, Duration) {
        let (lo, hi) = self.bounds_nanos(base.as_nanos());
        (from_nanos(lo), from_nanos(hi))
    }

    fn bounds_nanos(&self, b: u128) -> (u128, u128) {
        let max = Duration::MAX.as_nanos();
        match *self {
            Jitter::None => (b, b),
            // `saturating_sub`: the variants' fields are public, so a ratio
            // above one (`ppb` over 10⁹) can be built; it clamps at zero.
            Jitter::Symmetric { ppb } => {
                let d = b * u128::from(ppb) / PPB;
                (b.saturating_sub(d), b.saturating_add(d).min(max))
            }
            Jitter::Below { ppb } => (b.saturating_sub(b * u128::from(ppb) / PPB), b),
            Jitter::Absolute(j) => {
                let d = j.as_nanos();
                (b.saturating_sub(d), b.saturating_add(d).min(max))
            }
        }
    }

    /// [`bounds_nanos`](Self::bounds_nanos) in `u64` nanoseconds, where it
    /// fits (any base and spread under ~584 years); `None` otherwise.
    fn bounds_u64(&self, b: u64) -> Option<(u64, u64)> {
        match *self {
            Jitter::None => Some((b, b)),
            Jitter::Symmetric { ppb } => {
                let d = scale(b, ppb)?;
                Some((b.saturating_sub(d), b.checked_add(d)?))
            }
            Jitter::Below { ppb } => Some((b.saturating_sub(scale(b, ppb)?), b)),
            Jitter::Absolute(j) => {
                let d = u64::try_from(j.as_nanos()).ok()?;
                Some((b.saturating_sub(d), b.checked_add(d)?))
            }
        }
    }

    /// A jittered `base`, drawn uniformly from [`bounds`](Self::bounds) with `rng`.
    pub fn apply_with<R: Rng + ?Sized>(&self, base: Duration, rng: &mut R) -> Duration {
        // The common case in `u64`: the `u128` path's divisions and its
        // 128-bit uniform draw are library calls, about half of a jittered
        // write's cost.
        let small = u64::try_from(base.as_nanos()).ok();
        if let Some((lo, hi)) = small.and_then(|b| self.bounds_u64(b)) {
            if lo == hi {
                return Duration::from_nanos(lo);
            }
            return Duration::from_nanos(rng.random_range(lo..=hi));
        }
        let (lo, hi) = self.bounds_nanos(base.as_nanos());
        if lo == hi {
            return from_nanos(lo);
        }
        from_nanos(rng.random_range(lo..=hi))
    }

    /// A jittered `base`, using the thread-local RNG.
    #[must_use]
    pub fn apply(&self, base: Duration) -> Duration {
        self.apply_with(base, &mut rand::rng())
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::DEFAULT
    }
}

/// `b × ppb / 10⁹`, rounded down like the `u128` path, without a 128-bit
/// product (`b` split at 10⁹: the remainder's product stays under 2⁶³);
/// `None` if it overflows.
fn scale(b: u64, ppb: u32) -> Option<u64> {
    const P: u64 = 1_000_000_000;
    let ppb = u64::from(ppb);
    (b / P).checked_mul(ppb)?.checked_add((b % P) * ppb / P)
}

fn from_nanos(n: u128) -> Duration {
    let secs = u64::try_from(n / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // n % 1e9 < 1e9 fits u32.
    Duration::new(secs, (n % NANOS_PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_outside_unit_interval_are_rejected() {
        for bad in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
            assert!(Jitter::symmetric(bad).is_err(), "{bad}");
            assert!(Jitter::below(bad).is_err(), "{bad}");
        }
        assert!(Jitter::symmetric(0.0).is_ok());
        assert!(Jitter::symmetric(1.0).is_ok());
    }

    proptest::proptest! {
        /// The `u64` fast path draws from exactly the `u128` path's bounds.
        #[test]
        fn the_u64_bounds_are_the_u128_bounds(
            b in proptest::prelude::any::<u64>(),
            ppb in proptest::prelude::any::<u32>(),
            abs in proptest::prelude::any::<u64>(),
            small in 0u64..10_000_000_000_000,
        ) {
            for base in [b, small] {
                for j in [
                    Jitter::None,
                    Jitter::Symmetric { ppb },
                    Jitter::Below { ppb },
                    Jitter::Symmetric { ppb: ppb % 1_000_000_001 },
                    Jitter::Absolute(Duration::from_nanos(abs)),
                    Jitter::Absolute(Duration::from_nanos(abs % 1_000_000_000_000)),
                ] {
                    if let Some((lo, hi)) = j.bounds_u64(base) {
                        let (lo2, hi2) = j.bounds_nanos(u128::from(base));
                        proptest::prop_assert_eq!((u128::from(lo), u128::from(hi)), (lo2, hi2));
                    }
                }
            }
        }
    }

    #[test]
    fn the_u64_path_covers_every_ordinary_ttl() {
        // A day's TTL with the default spread, and a year with a minute's.
        let day = 86_400 * 1_000_000_000;
        assert!(Jitter::DEFAULT.bounds_u64(day).is_some());
        let year = 365 * day;
        let minute = Duration::from_secs(60);
        assert!(Jitter::absolute(minute).bounds_u64(year).is_some());
    }

    /// The variants' fields are public, so a ratio above one can be built:
    /// its lower bound clamps at zero instead of underflowing.
    #[test]
    fn a_ratio_above_one_clamps_at_zero() {
        let base = Duration::from_secs(10);
        for j in [
            Jitter::Symmetric { ppb: u32::MAX },
            Jitter::Below { ppb: u32::MAX },
        ] {
            let (lo, hi) = j.bounds(base);
            assert_eq!(lo, Duration::ZERO, "{j:?}");
            let t = j.apply(base);
            assert!(t <= hi, "{j:?}: {t:?} > {hi:?}");
            assert_eq!(j.bounds(Duration::MAX).0, Duration::ZERO, "{j:?}");
        }
    }

    #[test]
    fn bounds_are_exact() {
        let j = Jitter::symmetric(0.2).expect("valid");
        assert_eq!(
            j.bounds(Duration::from_secs(100)),
            (Duration::from_secs(80), Duration::from_secs(120))
        );
        let j = Jitter::below(0.5).expect("valid");
        assert_eq!(
            j.bounds(Duration::from_nanos(3)),
            (Duration::from_nanos(2), Duration::from_nanos(3))
        );
        let j = Jitter::absolute(Duration::from_secs(5));
        assert_eq!(
            j.bounds(Duration::from_secs(2)),
            (Duration::ZERO, Duration::from_secs(7))
        );
        assert_eq!(
            Jitter::DEFAULT.bounds(Duration::MAX).1,
            Duration::MAX,
            "saturates at Duration::MAX"
        );
    }
}
