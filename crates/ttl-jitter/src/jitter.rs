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
            Jitter::Symmetric { ppb } => {
                let d = b * u128::from(ppb) / PPB;
                (b - d, b.saturating_add(d).min(max))
            }
            Jitter::Below { ppb } => (b - b * u128::from(ppb) / PPB, b),
            Jitter::Absolute(j) => {
                let d = j.as_nanos();
                (b.saturating_sub(d), b.saturating_add(d).min(max))
            }
        }
    }

    /// A jittered `base`, drawn uniformly from [`bounds`](Self::bounds) with `rng`.
    pub fn apply_with<R: Rng + ?Sized>(&self, base: Duration, rng: &mut R) -> Duration {
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
