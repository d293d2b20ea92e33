//! Time as the cache sees it: a millisecond [`Timestamp`] and an injectable [`Clock`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in wall-clock time: milliseconds since the Unix epoch.
///
/// Millisecond precision matches what Redis keeps for `PEXPIRE`, so an entry's expiry
/// means the same thing in every tier and in every process that shares the L2.
/// Arithmetic saturates instead of overflowing.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The latest representable instant; used for "never expires".
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp `millis` milliseconds after the Unix epoch.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// `self - d`, saturating at [`Timestamp::ZERO`].
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }

    /// How long after `earlier` this timestamp is; zero if it is not later.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

/// A source of the current time.
///
/// Every TTL decision in the workspace asks a `Clock`, so tests can drive time with
/// [`MockClock`] instead of sleeping.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// The current time, possibly a little behind [`now`](Self::now), read as
    /// cheaply as the clock allows. Hot read paths (an L1 hit deciding whether an
    /// entry is still live) ask this; anything that writes a time down asks `now`.
    ///
    /// The default is `now()`, so a [`MockClock`] is exact. [`SystemClock`] answers
    /// from a millisecond tick kept by a background thread.
    fn recent(&self) -> Timestamp {
        self.now()
    }

    /// Whether this clock is the [`SystemClock`] (or shares one): a hot path
    /// may then call [`SystemClock`]'s `recent` directly instead of through
    /// `dyn Clock`. Other clocks keep the default, `false`.
    fn is_system(&self) -> bool {
        false
    }
}

/// The operating system's wall clock.
///
/// [`recent`](Clock::recent) reads a copy of the time that one background thread
/// (`cache-clock`, started on first use) refreshes every millisecond: a relaxed
/// atomic load instead of a `clock_gettime` call (about 30 ns on a virtual machine).
/// It lags `now()` by about a millisecond, more only while the process is starved
/// of CPU; a cache entry can therefore be served that much past its expiry. If the
/// thread cannot be started, `recent()` is `now()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    fn read() -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }
}

/// The tick behind [`SystemClock::recent`]: 0 until the ticker thread runs.
static TICK: AtomicU64 = AtomicU64::new(0);
/// How often the ticker refreshes [`TICK`].
const TICK_EVERY: Duration = Duration::from_millis(1);

fn start_ticker() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("cache-clock".into())
            .spawn(|| {
                loop {
                    TICK.store(SystemClock::read().as_millis(), Ordering::Relaxed);
                    std::thread::sleep(TICK_EVERY);
                }
            });
        if spawned.is_ok() {
            TICK.store(SystemClock::read().as_millis(), Ordering::Relaxed);
        }
    });
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        SystemClock::read()
    }

    #[inline]
    fn recent(&self) -> Timestamp {
        match TICK.load(Ordering::Relaxed) {
            0 => {
                start_ticker();
                SystemClock::read()
            }
            millis => Timestamp(millis),
        }
    }

    fn is_system(&self) -> bool {
        true
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{Clock, MockClock, Timestamp};
///
/// let clock = MockClock::new(Timestamp::from_millis(1_000));
/// let view = clock.clone();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(view.now(), Timestamp::from_millis(1_250));
/// ```
#[derive(Debug, Clone)]
pub struct MockClock {
    millis: Arc<AtomicU64>,
}

impl MockClock {
    /// A mock clock showing `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        MockClock {
            millis: Arc::new(AtomicU64::new(start.as_millis())),
        }
    }

    /// Moves the clock forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .millis
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                Some(cur.saturating_add(ms))
            });
    }

    /// Sets the clock to `t` (it may move backwards, to test clock skew).
    pub fn set(&self, t: Timestamp) {
        self.millis.store(t.as_millis(), Ordering::SeqCst);
    }
}

impl Default for MockClock {
    fn default() -> Self {
        MockClock::new(Timestamp::from_millis(1_700_000_000_000))
    }
}

impl Clock for MockClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.millis.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn recent(&self) -> Timestamp {
        (**self).recent()
    }

    fn is_system(&self) -> bool {
        (**self).is_system()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_system_clock_says_it_is_one() {
        let system: Arc<dyn Clock> = Arc::new(SystemClock);
        assert!(SystemClock.is_system() && system.is_system());
        assert!(Arc::new(system).is_system());
        assert!(!MockClock::new(Timestamp::ZERO).is_system());
    }

    use super::*;

    #[test]
    fn mock_recent_is_exact() {
        let clock = MockClock::default();
        clock.advance(Duration::from_millis(7));
        assert_eq!(clock.recent(), clock.now());
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        clock.advance(Duration::from_millis(3));
        assert_eq!(shared.recent(), clock.now());
    }

    #[test]
    fn system_recent_follows_now() {
        let clock = SystemClock;
        let first = clock.recent();
        assert!(first <= clock.now());
        // The tick moves on its own; allow a generous delay on a loaded machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            std::thread::sleep(Duration::from_millis(5));
            let later = clock.recent();
            if later > first {
                assert!(later <= clock.now());
                assert!(clock.now().saturating_duration_since(later) < Duration::from_secs(1));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the tick never advanced"
            );
        }
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(
            Timestamp::MAX.saturating_add(Duration::from_secs(1)),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::ZERO.saturating_add(Duration::MAX),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::from_millis(5).saturating_sub(Duration::from_secs(1)),
            Timestamp::ZERO
        );
        assert_eq!(
            Timestamp::from_millis(5).saturating_duration_since(Timestamp::from_millis(9)),
            Duration::ZERO
        );
        assert_eq!(
            Timestamp::from_millis(9).saturating_duration_since(Timestamp::from_millis(5)),
            Duration::from_millis(4)
        );
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > Timestamp::from_millis(1_577_836_800_000));
    }

    #[test]
    fn mock_clock_moves_only_when_told() {
        let c = MockClock::new(Timestamp::from_millis(10));
        assert_eq!(c.now(), Timestamp::from_millis(10));
        c.advance(Duration::from_millis(5));
        assert_eq!(c.now(), Timestamp::from_millis(15));
        c.set(Timestamp::from_millis(3));
        assert_eq!(c.now(), Timestamp::from_millis(3));
        c.advance(Duration::MAX);
        assert_eq!(c.now(), Timestamp::MAX);
    }
}
