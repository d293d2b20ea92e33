//! [`XFetch`]: probabilistic early refresh (Vattani, Chierichetti, Lowenstein,
//! "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015).
//!
//! Each read before expiry refreshes early with probability `exp(−t / (β·δ))`,
//! where `t` is the time left, `δ` the time a recompute takes and `β` a
//! knob (1 by default; more than 1 refreshes earlier). Equivalently: refresh when
//! `now − δ·β·ln(U) ≥ expiry` for `U` uniform on `(0, 1]`. So a hot key is
//! refreshed by one reader shortly before it expires, instead of by every reader
//! just after.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng, RngExt};

/// β was negative or not finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidBeta(pub f64);

impl fmt::Display for InvalidBeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XFetch beta {} must be a finite number >= 0", self.0)
    }
}

impl std::error::Error for InvalidBeta {}

/// The early-refresh rule with its β.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct XFetch {
    beta: f64,
}

impl Default for XFetch {
    fn default() -> Self {
        XFetch { beta: 1.0 }
    }
}

impl XFetch {
    /// The rule with `beta` (≥ 0; 0 disables early refresh).
    pub fn new(beta: f64) -> Result<Self, InvalidBeta> {
        if beta.is_finite() && beta >= 0.0 {
            Ok(XFetch { beta })
        } else {
            Err(InvalidBeta(beta))
        }
    }

    /// β.
    #[must_use]
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// Should this read refresh now? `time_left` is the time until expiry (zero
    /// once expired), `delta` the recompute time. At or past expiry: always.
    /// `delta = 0` or `β = 0`: only at expiry.
    pub fn should_refresh_with<R: Rng + ?Sized>(
        &self,
        time_left: Duration,
        delta: Duration,
        rng: &mut R,
    ) -> bool {
        if time_left.is_zero() {
            return true;
        }
        if delta.is_zero() || self.beta == 0.0 {
            return false;
        }
        // random() is uniform on [0, 1); 1 − it is uniform on (0, 1].
        let u: f64 = 1.0 - rng.random::<f64>();
        self.decide(time_left, delta, u)
    }

    /// [`should_refresh_with`](Self::should_refresh_with) using the thread-local RNG.
    #[must_use]
    pub fn should_refresh(&self, time_left: Duration, delta: Duration) -> bool {
        self.should_refresh_with(time_left, delta, &mut rand::rng())
    }

    /// The rule for a given `u` in `(0, 1]`: `δ·β·(−ln u) ≥ time_left`.
    #[must_use]
    pub fn decide(&self, time_left: Duration, delta: Duration, u: f64) -> bool {
        if time_left.is_zero() {
            return true;
        }
        let gap = delta.as_secs_f64() * self.beta * -u.ln();
        gap >= time_left.as_secs_f64()
    }

    /// The probability that one read with `time_left` refreshes: `exp(−t/(β·δ))`.
    #[must_use]
    pub fn probability(&self, time_left: Duration, delta: Duration) -> f64 {
        if time_left.is_zero() {
            return 1.0;
        }
        let scale = self.beta * delta.as_secs_f64();
        if scale == 0.0 {
            0.0
        } else {
            (-time_left.as_secs_f64() / scale).exp()
        }
    }
}

/// Tracks δ, the recompute time, as an exponentially weighted moving average.
/// Lock-free: share it between tasks by reference.
#[derive(Debug)]
pub struct RecomputeTime {
    /// `f64` seconds as bits; `u64::MAX` before the first sample.
    bits: AtomicU64,
    alpha: f64,
}

const EMPTY: u64 = u64::MAX;

impl RecomputeTime {
    /// An average giving weight `alpha` (in `(0, 1]`, clamped) to each new sample.
    #[must_use]
    pub fn new(alpha: f64) -> Self {
        let alpha = if alpha.is_finite() {
            alpha.clamp(f64::MIN_POSITIVE, 1.0)
        } else {
            1.0
        };
        RecomputeTime {
            bits: AtomicU64::new(EMPTY),
            alpha,
        }
    }

    /// Adds a measured recompute time.
    pub fn record(&self, took: Duration) {
        let sample = took.as_secs_f64();
        let _ = self
            .bits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                let next = if cur == EMPTY {
                    sample
                } else {
                    let old = f64::from_bits(cur);
                    old + self.alpha * (sample - old)
                };
                Some(next.to_bits())
            });
    }

    /// The current estimate of δ (zero before any sample).
    #[must_use]
    pub fn get(&self) -> Duration {
        match self.bits.load(Ordering::Acquire) {
            EMPTY => Duration::ZERO,
            bits => Duration::try_from_secs_f64(f64::from_bits(bits)).unwrap_or(Duration::ZERO),
        }
    }
}

impl Default for RecomputeTime {
    /// α = 0.2.
    fn default() -> Self {
        RecomputeTime::new(0.2)
    }
}
