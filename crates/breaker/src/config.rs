//! [`CircuitBreakerBuilder`]: the breaker's policy, validated by [`CircuitBreakerBuilder::build`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::{CircuitBreaker, Transition};
use crate::clock::{Clock, SystemClock};
use crate::state::MAX_PERMITTED_PROBES;

/// When a closed breaker trips.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// Trip after this many failures in a row (a success resets the run).
    ConsecutiveFailures(u32),
    /// Trip when the failure rate over the last `size` calls reaches `threshold`
    /// (a fraction in (0, 1]), once at least `minimum_calls` were recorded.
    CountWindow {
        /// Calls kept in the window.
        size: u32,
        /// Failure rate that trips, inclusive.
        threshold: f64,
        /// Calls needed before any decision.
        minimum_calls: u32,
    },
    /// Trip when the failure rate over the last `window` of time reaches
    /// `threshold`, once at least `minimum_calls` were recorded in it. The window
    /// moves in tenths of its length.
    TimeWindow {
        /// Length of the window.
        window: Duration,
        /// Failure rate that trips, inclusive.
        threshold: f64,
        /// Calls needed before any decision.
        minimum_calls: u32,
    },
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The offending setting.
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid circuit breaker configuration: `{}` {}",
            self.field, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

pub(crate) type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// Builds a [`CircuitBreaker`].
///
/// Defaults: trip after 5 consecutive failures, wait 5 s in open state, admit
/// 3 probes in half-open state, no backoff, no slow-call detection.
#[must_use = "a builder does nothing until build() is called"]
pub struct CircuitBreakerBuilder {
    pub(crate) name: String,
    pub(crate) policy: Policy,
    pub(crate) wait_in_open: Duration,
    pub(crate) backoff: Option<(f64, Duration)>,
    pub(crate) permitted_in_half_open: u32,
    pub(crate) slow_call: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Whether [`clock`](CircuitBreakerBuilder::clock) was called.
    clock_set: bool,
    pub(crate) listener: Option<Listener>,
}

impl fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("wait_in_open", &self.wait_in_open)
            .field("backoff", &self.backoff)
            .field("permitted_in_half_open", &self.permitted_in_half_open)
            .field("slow_call", &self.slow_call)
            .finish_non_exhaustive()
    }
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        CircuitBreakerBuilder {
            name: "breaker".into(),
            policy: Policy::ConsecutiveFailures(5),
            wait_in_open: Duration::from_secs(5),
            backoff: None,
            permitted_in_half_open: 3,
            slow_call: None,
            clock: Arc::new(SystemClock),
            clock_set: false,
            listener: None,
        }
    }
}

impl CircuitBreakerBuilder {
    /// A name for events and metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Trip after `n` consecutive failures.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.policy = Policy::ConsecutiveFailures(n);
        self
    }

    /// Trip on the failure rate over the last `size` calls.
    pub fn count_window(mut self, size: u32, threshold: f64, minimum_calls: u32) -> Self {
        self.policy = Policy::CountWindow {
            size,
            threshold,
            minimum_calls,
        };
        self
    }

    /// Trip on the failure rate over the last `window` of time.
    pub fn time_window(mut self, window: Duration, threshold: f64, minimum_calls: u32) -> Self {
        self.policy = Policy::TimeWindow {
            window,
            threshold,
            minimum_calls,
        };
        self
    }

    /// Any policy at once.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long an open breaker rejects before admitting probes.
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.wait_in_open = wait;
        self
    }

    /// Grows the wait after each failed probe: `wait × multiplier^n`, capped at
    /// `max`. A successful close resets it.
    pub fn backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.backoff = Some((multiplier, max));
        self
    }

    /// How many probes a half-open breaker admits (at once and in all); all must
    /// succeed to close, one failure reopens.
    pub fn permitted_in_half_open(mut self, n: u32) -> Self {
        self.permitted_in_half_open = n;
        self
    }

    /// A success that took at least `d` counts as a failure (a slow call).
    pub fn slow_call_duration(mut self, d: Duration) -> Self {
        self.slow_call = Some(d);
        self
    }

    /// Whether a clock was given with [`clock`](Self::clock) (a composing crate
    /// may then leave it alone, or else supply its own).
    #[must_use]
    pub fn has_clock(&self) -> bool {
        self.clock_set
    }

    /// The clock (default: the system's monotonic clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock_set = true;
        self.clock = Arc::new(clock);
        self
    }

    /// Called exactly once per state transition, after it happened.
    pub fn on_transition(mut self, f: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        let rate_ok = |t: f64| t > 0.0 && t <= 1.0;
        match self.policy {
            Policy::ConsecutiveFailures(0) => {
                return Err(ConfigError::new(
                    "consecutive_failures",
                    "must be at least 1",
                ));
            }
            Policy::CountWindow {
                size,
                threshold,
                minimum_calls,
            } => {
                if size == 0 || size > 1 << 20 {
                    return Err(ConfigError::new(
                        "count_window.size",
                        "must be 1 to 1048576",
                    ));
                }
                if !rate_ok(threshold) {
                    return Err(ConfigError::new("threshold", "must be in (0, 1]"));
                }
                if minimum_calls == 0 || minimum_calls > size {
                    return Err(ConfigError::new(
                        "minimum_calls",
                        format!("must be 1 to the window size ({size})"),
                    ));
                }
            }
            Policy::TimeWindow {
                window,
                threshold,
                minimum_calls,
            } => {
                if window < Duration::from_millis(10) {
                    return Err(ConfigError::new("time_window", "must be at least 10 ms"));
                }
                if !rate_ok(threshold) {
                    return Err(ConfigError::new("threshold", "must be in (0, 1]"));
                }
                if minimum_calls == 0 {
                    return Err(ConfigError::new("minimum_calls", "must be at least 1"));
                }
            }
            Policy::ConsecutiveFailures(_) => {}
        }
        if self.wait_in_open.is_zero() {
            return Err(ConfigError::new("wait_in_open", "must be longer than zero"));
        }
        if let Some((mult, max)) = self.backoff {
            if !(mult >= 1.0 && mult.is_finite()) {
                return Err(ConfigError::new(
                    "backoff.multiplier",
                    "must be a finite number >= 1",
                ));
            }
            if max < self.wait_in_open {
                return Err(ConfigError::new(
                    "backoff.max",
                    "must be at least wait_in_open",
                ));
            }
        }
        if self.permitted_in_half_open == 0 || self.permitted_in_half_open > MAX_PERMITTED_PROBES {
            return Err(ConfigError::new(
                "permitted_in_half_open",
                format!("must be 1 to {MAX_PERMITTED_PROBES}"),
            ));
        }
        if self.slow_call.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "slow_call_duration",
                "must be longer than zero",
            ));
        }
        Ok(CircuitBreaker::from_builder(self))
    }
}
