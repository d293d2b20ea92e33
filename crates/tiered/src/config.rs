//! Configuration types: the fail mode, the gap policy and their defaults.

use std::time::Duration;

/// What an instance does with its L1 when the invalidation bus reports a gap:
/// messages were lost for good (Redis restarted or failed over, or the stream
/// was trimmed past what this instance had read), so any L1 entry may be one
/// that another instance invalidated meanwhile.
///
/// A bus that merely reconnects is *not* a gap: it replays what it missed.
///
/// | policy | a missed invalidation is served at most | cost |
/// |---|---|---|
/// | [`Clear`](GapPolicy::Clear) | not at all | every hot key of every instance goes to L2, and to the source when L2 came back empty |
/// | [`Revalidate`](GapPolicy::Revalidate) | not at all (L2 is asked first) | every hot key is read from L2 once; from the source when L2 is empty |
/// | [`Shorten`](GapPolicy::Shorten) (default, 30 s) | until the shortened lifetime ends | none at once: entries go back to L2 and the source spread over the second half of the window |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapPolicy {
    /// Drop every L1 entry.
    Clear,
    /// Keep L1 entries but make them stale: each is read again from L2 (or
    /// loaded) before it is served fresh, and stays available as a fail-safe
    /// fallback within its stale window.
    Revalidate,
    /// Keep L1 entries but end their freshness within this window (spread over
    /// its second half by key), unless they end sooner anyway.
    Shorten(Duration),
}

/// The default [`GapPolicy`]: shorten L1 lifetimes to at most 30 s.
pub const DEFAULT_GAP_POLICY: GapPolicy = GapPolicy::Shorten(Duration::from_secs(30));

/// Default bound of the recovery queue (operations, one per key, tag or prefix).
pub const DEFAULT_RECOVERY_CAPACITY: usize = 100_000;

/// The L2 breaker's default policy, tuned with `cargo xtask chaos`:
///
/// - **Trips** when at least half of the L2 calls of the last 2 s failed, once at
///   least 10 were made. One burst of timeouts among many answered calls (a slot
///   migration, a failover) does not trip it; a dead Redis does within its first
///   10 calls, each costing its caller at most one operation timeout.
/// - **Waits 500 ms** open, then lets 3 probes through; 3 successes close it. L2
///   is used again within about half a second of Redis answering.
///
/// ```
/// let breaker = cache_tiered::default_breaker().build()?;
/// assert_eq!(breaker.state(), cache_breaker::State::Closed);
/// # Ok::<(), cache_breaker::ConfigError>(())
/// ```
pub fn default_breaker() -> cache_breaker::CircuitBreakerBuilder {
    cache_breaker::CircuitBreaker::builder()
        .name("l2")
        .time_window(Duration::from_secs(2), 0.5, 10)
        .wait_in_open(Duration::from_millis(500))
        .permitted_in_half_open(3)
}

impl Default for GapPolicy {
    fn default() -> Self {
        DEFAULT_GAP_POLICY
    }
}

/// What an L2 fault does to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Degrade to L1 (and the loader): reads miss, writes are counted, not thrown.
    #[default]
    Open,
    /// Return the fault to the caller.
    Closed,
}

/// Which tiers one call reads and writes, and what an L2 fault does to it
/// (`None`: the store's [`FailMode`]). [`Route::ALL`] is what every call does
/// unless told otherwise.
///
/// ```
/// use cache_tiered::{FailMode, Route};
/// let local_only = Route { read_l2: false, write_l2: false, ..Route::ALL };
/// assert!(local_only.read_l1 && !local_only.uses_l2());
/// let strict = Route { fail_mode: Some(FailMode::Closed), ..Route::ALL };
/// assert_eq!(strict.mode(FailMode::Open), FailMode::Closed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Look in L1.
    pub read_l1: bool,
    /// Look in L2 (and backfill L1 from it, when `write_l1`).
    pub read_l2: bool,
    /// Store in L1.
    pub write_l1: bool,
    /// Store in L2.
    pub write_l2: bool,
    /// The fail mode of this call, over the store's.
    pub fail_mode: Option<FailMode>,
}

impl Route {
    /// Both tiers, read and written; the store's fail mode.
    pub const ALL: Route = Route {
        read_l1: true,
        read_l2: true,
        write_l1: true,
        write_l2: true,
        fail_mode: None,
    };

    /// The fail mode in force: this route's, else `store`'s.
    #[must_use]
    pub fn mode(&self, store: FailMode) -> FailMode {
        self.fail_mode.unwrap_or(store)
    }

    /// Whether the call reads and writes L2 (a fleet lease needs both).
    #[must_use]
    pub fn uses_l2(&self) -> bool {
        self.read_l2 && self.write_l2
    }
}

impl Default for Route {
    fn default() -> Self {
        Route::ALL
    }
}
