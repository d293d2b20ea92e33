//! [`CircuitBreaker`] and its [`Permit`].

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::config::{CircuitBreakerBuilder, Listener, Policy};
use crate::error::{CallError, Rejected};
use crate::state::{State, Word};
use crate::sync::{AtomicU64, Mutex, Ordering};
use crate::window::Window;

/// Buckets of a time-based window.
const TIME_BUCKETS: usize = 10;

/// A state change, as given to the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// When it happened (by the breaker's clock).
    pub at: Instant,
}

/// A snapshot of the breaker's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// Current state.
    pub state: State,
    /// Failure rate in the current window, once `minimum_calls` were seen
    /// (for the consecutive policy: 1.0 while a run of failures is going on).
    pub failure_rate: Option<f64>,
    /// Calls in the current window (consecutive policy: the current run).
    pub calls_in_window: u64,
    /// Failures in the current window.
    pub failures_in_window: u64,
    /// Successful calls recorded (all time).
    pub successes: u64,
    /// Failed calls recorded, slow ones included (all time).
    pub failures: u64,
    /// Successes that were slow and so counted as failures.
    pub slow_calls: u64,
    /// Outcomes classified as neither success nor failure.
    pub ignored: u64,
    /// Calls rejected without reaching the dependency.
    pub rejected: u64,
    /// State transitions so far.
    pub transitions: u64,
}

/// What a permit's holder reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
    Ignore,
}

/// The identity of an admitted call: its generation and whether it is a probe.
#[derive(Clone, Copy)]
pub(crate) struct Ticket {
    generation: u32,
    probe: bool,
    /// Nanoseconds since origin at admission, when slow calls are detected.
    started: Option<u64>,
}

/// A circuit breaker. Share it by reference or in an `Arc`; all methods take `&self`.
///
/// The closed-state path is lock-free and allocation-free: one atomic load to
/// admit, one or two atomic operations to record. Transitions (rare) take a
/// per-breaker lock and fire the listener exactly once each.
pub struct CircuitBreaker {
    name: Arc<str>,
    word: AtomicU64,
    /// Nanoseconds since `origin` at which an open breaker admits probes.
    open_until: AtomicU64,
    window: Window,
    /// (threshold, minimum_calls) for rate policies; consecutive uses the count.
    trip_rate: Option<(f64, u64)>,
    trip_consecutive: u64,
    wait_in_open: Duration,
    backoff: Option<(f64, Duration)>,
    permitted: u32,
    slow_call_nanos: Option<u64>,
    clock: Arc<dyn Clock>,
    origin: Instant,
    /// Held only while changing state; holds the backoff level.
    transition_lock: Mutex<u32>,
    listener: Option<Listener>,
    successes: AtomicU64,
    failures: AtomicU64,
    slow_calls: AtomicU64,
    ignored: AtomicU64,
    rejected: AtomicU64,
    transitions: AtomicU64,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A builder with the defaults.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }

    pub(crate) fn from_builder(b: CircuitBreakerBuilder) -> Self {
        let (window, trip_rate, trip_consecutive) = match b.policy {
            Policy::ConsecutiveFailures(n) => (Window::consecutive(), None, u64::from(n)),
            Policy::CountWindow {
                size,
                threshold,
                minimum_calls,
            } => (
                Window::count(size as usize),
                Some((threshold, u64::from(minimum_calls))),
                0,
            ),
            Policy::TimeWindow {
                window,
                threshold,
                minimum_calls,
            } => {
                let bucket =
                    u64::try_from(window.as_nanos() / TIME_BUCKETS as u128).unwrap_or(u64::MAX);
                (
                    Window::time(bucket, TIME_BUCKETS),
                    Some((threshold, u64::from(minimum_calls))),
                    0,
                )
            }
        };
        let origin = b.clock.now();
        CircuitBreaker {
            name: Arc::from(b.name),
            word: AtomicU64::new(Word::new(State::Closed, 0).0),
            open_until: AtomicU64::new(0),
            window,
            trip_rate,
            trip_consecutive,
            wait_in_open: b.wait_in_open,
            backoff: b.backoff,
            permitted: b.permitted_in_half_open,
            slow_call_nanos: b
                .slow_call
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            clock: b.clock,
            origin,
            transition_lock: Mutex::new(0),
            listener: b.listener,
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            slow_calls: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
        }
    }

    /// The breaker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current state. An open breaker whose wait has passed still reports
    /// `Open` until the next call moves it to half-open.
    #[must_use]
    pub fn state(&self) -> State {
        self.load().state()
    }

    fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    fn now_nanos(&self) -> u64 {
        let d = self.clock.now().saturating_duration_since(self.origin);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Asks to make a call. `Ok(permit)`: go ahead, then report the outcome on the
    /// permit (dropping it unreported frees its slot and records nothing).
    /// `Err(rejected)`: do not call the dependency.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        self.admit().map(|ticket| {
            Permit(Held {
                breaker: self,
                ticket,
                settled: false,
            })
        })
    }

    pub(crate) fn admit(&self) -> Result<Ticket, Rejected> {
        loop {
            let w = self.load();
            match w.state() {
                State::Closed => return Ok(self.ticket(w, false)),
                State::Open => {
                    let until = self.open_until.load(Ordering::Acquire);
                    let now = self.now_nanos();
                    if now < until {
                        self.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(Rejected {
                            state: State::Open,
                            retry_after: Some(Duration::from_nanos(until - now)),
                        });
                    }
                    self.transition(w, State::Open, State::HalfOpen);
                }
                State::HalfOpen => {
                    if w.probes() + w.successes() >= self.permitted {
                        self.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(Rejected {
                            state: State::HalfOpen,
                            retry_after: None,
                        });
                    }
                    let next = w.with_counts(w.probes() + 1, w.successes());
                    if self
                        .word
                        .compare_exchange(w.0, next.0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Ok(self.ticket(w, true));
                    }
                }
            }
        }
    }

    /// A ticket for a call admitted in `w`'s generation (timed only when slow
    /// calls are detected).
    fn ticket(&self, w: Word, probe: bool) -> Ticket {
        Ticket {
            generation: w.generation(),
            probe,
            started: self.slow_call_nanos.map(|_| self.now_nanos()),
        }
    }

    /// Frees the probe slot of a call dropped without an outcome; records nothing.
    fn release(&self, ticket: Ticket) {
        if ticket.probe {
            self.settle_probe(ticket.generation, Verdict::Ignore);
        }
    }

    /// Records the outcome of an admitted call.
    pub(crate) fn settle(&self, ticket: Ticket, verdict: Verdict) {
        let mut verdict = verdict;
        if verdict == Verdict::Success
            && let (Some(limit), Some(start)) = (self.slow_call_nanos, ticket.started)
            && self.now_nanos().saturating_sub(start) >= limit
        {
            self.slow_calls.fetch_add(1, Ordering::Relaxed);
            verdict = Verdict::Failure;
        }
        match verdict {
            Verdict::Success => self.successes.fetch_add(1, Ordering::Relaxed),
            Verdict::Failure => self.failures.fetch_add(1, Ordering::Relaxed),
            Verdict::Ignore => self.ignored.fetch_add(1, Ordering::Relaxed),
        };
        if ticket.probe {
            self.settle_probe(ticket.generation, verdict);
        } else if verdict != Verdict::Ignore {
            let w = self.load();
            if w.state() != State::Closed || w.generation() != ticket.generation {
                return; // the state moved on: a stale outcome
            }
            // Only a time window needs the clock; the common success path skips it.
            let now = if self.window.is_timed() {
                self.now_nanos()
            } else {
                0
            };
            let failure = verdict == Verdict::Failure;
            self.window.record(failure, now);
            if failure && self.should_trip(now) {
                self.transition(w, State::Closed, State::Open);
            }
        }
    }

    fn should_trip(&self, now: u64) -> bool {
        let t = self.window.tally(now);
        match self.trip_rate {
            None => t.failures >= self.trip_consecutive,
            Some((threshold, minimum)) => {
                t.calls >= minimum && t.failures as f64 >= threshold * t.calls as f64
            }
        }
    }

    fn settle_probe(&self, generation: u32, verdict: Verdict) {
        loop {
            let w = self.load();
            if w.state() != State::HalfOpen || w.generation() != generation {
                return;
            }
            match verdict {
                Verdict::Failure => {
                    self.transition(w, State::HalfOpen, State::Open);
                    return;
                }
                Verdict::Success if w.successes() + 1 >= self.permitted => {
                    self.transition(w, State::HalfOpen, State::Closed);
                    return;
                }
                Verdict::Success | Verdict::Ignore => {
                    let successes = w.successes() + u32::from(verdict == Verdict::Success);
                    let next = w.with_counts(w.probes().saturating_sub(1), successes);
                    if self
                        .word
                        .compare_exchange(w.0, next.0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Moves from `seen` (in state `from`) to `to`, unless the state moved on
    /// first. Exactly one caller wins each transition; it fires the listener.
    fn transition(&self, seen: Word, from: State, to: State) {
        let mut level = self.transition_lock.lock();
        // A failed probe grows the wait; opening from closed or closing starts over.
        let new_level = match (from, to) {
            (State::HalfOpen, State::Open) => level.saturating_add(1),
            (_, State::Open | State::Closed) => 0,
            (_, State::HalfOpen) => *level,
        };
        let open_until = (to == State::Open).then(|| {
            let wait = self.wait_for(new_level);
            self.now_nanos()
                .saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX))
        });
        loop {
            let w = self.load();
            if w.state() != from || w.generation() != seen.generation() {
                return;
            }
            // Published before the CAS, so whoever sees `Open` sees its deadline.
            if let Some(until) = open_until {
                self.open_until.store(until, Ordering::Release);
            }
            if self
                .word
                .compare_exchange(w.0, w.next(to).0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break;
            }
        }
        if to == State::Closed {
            self.window.reset();
        }
        *level = new_level;
        drop(level);
        self.transitions.fetch_add(1, Ordering::Relaxed);
        if let Some(listener) = &self.listener {
            listener(&Transition {
                from,
                to,
                at: self.clock.now(),
            });
        }
    }

    fn wait_for(&self, level: u32) -> Duration {
        match self.backoff {
            None => self.wait_in_open,
            Some((mult, max)) => {
                let exp = i32::try_from(level).unwrap_or(i32::MAX);
                let secs = self.wait_in_open.as_secs_f64() * mult.powi(exp);
                if secs.is_finite() && secs < max.as_secs_f64() {
                    Duration::from_secs_f64(secs)
                } else {
                    max
                }
            }
        }
    }

    /// Ends an open breaker's wait now, so its next call is a probe; does
    /// nothing in the other states. For evidence from outside the breaker's own
    /// calls that the dependency answers again (another connection to it just
    /// delivered data): waiting out the rest of the open period would turn away
    /// calls that would now succeed. The backoff level is kept, so a probe that
    /// fails opens the breaker for longer, as it would have.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_breaker::{CircuitBreaker, State};
    ///
    /// let breaker = CircuitBreaker::builder()
    ///     .consecutive_failures(1)
    ///     .wait_in_open(Duration::from_secs(30))
    ///     .permitted_in_half_open(1)
    ///     .build()?;
    /// breaker.try_acquire().expect("closed").failure();
    /// assert!(breaker.try_acquire().is_err(), "open for 30 s");
    ///
    /// breaker.end_open_wait(); // e.g. the service answered on another connection
    /// let probe = breaker.try_acquire().expect("a probe is admitted at once");
    /// assert!(probe.is_probe());
    /// probe.success();
    /// assert_eq!(breaker.state(), State::Closed);
    /// # Ok::<(), cache_breaker::ConfigError>(())
    /// ```
    pub fn end_open_wait(&self) {
        if self.state() != State::Open {
            return;
        }
        // Under the transition lock, so the deadline cut is the one of the open
        // period now current, never one that a concurrent transition replaces.
        let _level = self.transition_lock.lock();
        if self.load().state() == State::Open {
            let now = self.now_nanos();
            self.open_until.fetch_min(now, Ordering::AcqRel);
        }
    }

    /// How long until an open breaker admits a probe (`None` unless open).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        if self.state() != State::Open {
            return None;
        }
        let until = self.open_until.load(Ordering::Acquire);
        Some(Duration::from_nanos(until.saturating_sub(self.now_nanos())))
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        let t = self.window.tally(self.now_nanos());
        let failure_rate = match self.trip_rate {
            Some((_, minimum)) if t.calls >= minimum => Some(t.failures as f64 / t.calls as f64),
            Some(_) => None,
            None if t.calls > 0 => Some(1.0),
            None => None,
        };
        Metrics {
            state: self.state(),
            failure_rate,
            calls_in_window: t.calls,
            failures_in_window: t.failures,
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            slow_calls: self.slow_calls.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            transitions: self.transitions.load(Ordering::Relaxed),
        }
    }

    /// Runs `fut` through the breaker: every error counts as a failure.
    ///
    /// Rejected calls never poll `fut`. If the returned future is dropped before
    /// `fut` finishes, nothing is recorded and any probe slot is freed.
    pub async fn call<T, E, F>(&self, fut: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_classified(fut, |_| true).await
    }

    /// Like [`call`](Self::call), with `is_failure` deciding which errors count
    /// as failures; the others are ignored (neither success nor failure), for
    /// example a "not found" from a healthy dependency.
    pub async fn call_classified<T, E, F>(
        &self,
        fut: F,
        is_failure: impl Fn(&E) -> bool,
    ) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(CallError::Rejected)?;
        match fut.await {
            Ok(v) => {
                permit.success();
                Ok(v)
            }
            Err(e) => {
                if is_failure(&e) {
                    permit.failure();
                } else {
                    permit.ignore();
                }
                Err(CallError::Inner(e))
            }
        }
    }
}

/// The shared part of [`Permit`] and the tower layer's owned permit: a ticket
/// settled at most once, released (probe slot freed) if dropped unsettled.
struct Held<B: Deref<Target = CircuitBreaker>> {
    breaker: B,
    ticket: Ticket,
    settled: bool,
}

impl<B: Deref<Target = CircuitBreaker>> Held<B> {
    fn settle(&mut self, verdict: Verdict) {
        if !self.settled {
            self.settled = true;
            self.breaker.settle(self.ticket, verdict);
        }
    }
}

impl<B: Deref<Target = CircuitBreaker>> Drop for Held<B> {
    fn drop(&mut self) {
        if !self.settled {
            self.settled = true;
            self.breaker.release(self.ticket);
        }
    }
}

/// Permission for one call. Report its outcome with [`success`](Self::success),
/// [`failure`](Self::failure) or [`ignore`](Self::ignore); dropping it unreported
/// (a cancelled call) frees its slot and records nothing.
#[must_use = "report the call's outcome on the permit"]
pub struct Permit<'a>(Held<&'a CircuitBreaker>);

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &self.0.ticket.probe)
            .field("generation", &self.0.ticket.generation)
            .finish()
    }
}

impl Permit<'_> {
    /// True if this call is a half-open probe.
    #[must_use]
    pub fn is_probe(&self) -> bool {
        self.0.ticket.probe
    }

    /// The call succeeded (a slow success counts as a failure).
    pub fn success(mut self) {
        self.0.settle(Verdict::Success);
    }

    /// The call failed.
    pub fn failure(mut self) {
        self.0.settle(Verdict::Failure);
    }

    /// The outcome says nothing about the dependency's health.
    pub fn ignore(mut self) {
        self.0.settle(Verdict::Ignore);
    }
}

/// An owned permit (holds an `Arc` of the breaker), for futures that must be `'static`.
#[cfg(feature = "tower")]
pub(crate) struct OwnedPermit(Held<Arc<CircuitBreaker>>);

#[cfg(feature = "tower")]
impl OwnedPermit {
    pub(crate) fn acquire(breaker: &Arc<CircuitBreaker>) -> Result<Self, Rejected> {
        breaker.admit().map(|ticket| {
            OwnedPermit(Held {
                breaker: Arc::clone(breaker),
                ticket,
                settled: false,
            })
        })
    }

    pub(crate) fn settle(mut self, verdict: Verdict) {
        self.0.settle(verdict);
    }
}
