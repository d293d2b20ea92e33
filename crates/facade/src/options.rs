//! Entries shaped by the call and by the loader: [`LoadOptions`] (per call) and
//! [`LoadContext`] (what a loader sees and decides).

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Entry, InvalidInput, Tags};
use cache_tiered::{FailMode, Route};
use parking_lot::Mutex;

use crate::cache::Settings;

/// Options of one read-through call (`get_or_load_with`, `try_get_or_load_with`,
/// `get_many_or_load_with`). Anything not set comes from the cache.
///
/// When callers with different options coalesce on one key, the options of the
/// call that starts the load apply.
///
/// Per call, a read-through may also skip a tier ([`skip_l1`](Self::skip_l1),
/// [`skip_l2`](Self::skip_l2): its read, its write or both) and pick its own
/// [`FailMode`] (what an L2 fault does to this call: a miss, or the error). A
/// call that skips L2's read or write takes no fleet lease (there is no L2
/// value for other instances to wait for).
///
/// ```
/// use std::time::Duration;
/// use resilient_cache::{Cache, LoadOptions};
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let users: Cache<u64, String> = Cache::builder("users").build()?;
/// let options = LoadOptions::new()
///     .ttl(Duration::from_secs(30))
///     .tags(["user:7", "team:3"]);
/// let name = users
///     .get_or_load_with(7, &options, |ctx| async move { Some(format!("user {}", ctx.key())) })
///     .await?;
/// assert_eq!(name.as_deref(), Some("user 7"));
/// assert_eq!(users.invalidate_tag("user:7").await?, 1);
/// assert_eq!(users.get(&7).await?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    ttl: Option<Duration>,
    negative_ttl: Option<Duration>,
    stale_window: Option<Duration>,
    tags: Vec<String>,
    soft_timeout: Option<Duration>,
    hard_timeout: Option<Duration>,
    skip_l1: Option<Skip>,
    skip_l2: Option<Skip>,
    fail_mode: Option<FailMode>,
}

/// What a call skips of one tier; see [`LoadOptions::skip_l1`] and
/// [`LoadOptions::skip_l2`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// Do not look in the tier (its value is replaced by what this call finds
    /// elsewhere or loads: a forced refresh of that tier).
    Read,
    /// Look in the tier but do not store there (e.g. a value too private or too
    /// large for Redis, or one only this instance should hold).
    Write,
    /// Neither: the call acts as if the tier did not exist.
    Both,
}

impl Skip {
    fn reads(skip: Option<Skip>) -> bool {
        !matches!(skip, Some(Skip::Read | Skip::Both))
    }

    fn writes(skip: Option<Skip>) -> bool {
        !matches!(skip, Some(Skip::Write | Skip::Both))
    }
}

/// The route through the tiers of a call that skips `l1` and `l2` as given.
pub(crate) fn route(l1: Option<Skip>, l2: Option<Skip>, fail_mode: Option<FailMode>) -> Route {
    Route {
        read_l1: Skip::reads(l1),
        read_l2: Skip::reads(l2),
        write_l1: Skip::writes(l1),
        write_l2: Skip::writes(l2),
        fail_mode,
    }
}

impl LoadOptions {
    /// Everything from the cache.
    #[must_use]
    pub const fn new() -> Self {
        LoadOptions {
            ttl: None,
            negative_ttl: None,
            stale_window: None,
            tags: Vec::new(),
            soft_timeout: None,
            hard_timeout: None,
            skip_l1: None,
            skip_l2: None,
            fail_mode: None,
        }
    }

    /// TTL of a loaded value (still jittered).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// TTL of an *absent* result (zero: do not cache absence).
    #[must_use]
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// How long past its TTL a loaded value may stand in for a failed load.
    #[must_use]
    pub fn stale_window(mut self, window: Duration) -> Self {
        self.stale_window = Some(window);
        self
    }

    /// Tags of the loaded entry, for [`Cache::invalidate_tag`](crate::Cache::invalidate_tag)
    /// (L1 and L2 copies carry the same tags; an invalid tag fails the call before
    /// anything loads).
    #[must_use]
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Serve a stale value after this long and let the load finish in the background.
    #[must_use]
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.soft_timeout = Some(timeout);
        self
    }

    /// Give up on the load after this long.
    #[must_use]
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = Some(timeout);
        self
    }

    /// Skip L1's read, write or both for this call.
    ///
    /// ```
    /// use resilient_cache::{Cache, LoadOptions, Skip};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// users.set(1, "old".into()).await?;
    /// // Force a reload past what this instance holds, and store the result.
    /// let fresh = LoadOptions::new().skip_l1(Skip::Read).skip_l2(Skip::Read);
    /// let got = users.get_or_load_with(1, &fresh, |_| async { Some("new".to_string()) }).await?;
    /// assert_eq!(got.as_deref(), Some("new"));
    /// assert_eq!(users.get(&1).await?.as_deref(), Some("new"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn skip_l1(mut self, skip: Skip) -> Self {
        self.skip_l1 = Some(skip);
        self
    }

    /// Skip L2's read, write or both for this call (no fleet lease then).
    #[must_use]
    pub fn skip_l2(mut self, skip: Skip) -> Self {
        self.skip_l2 = Some(skip);
        self
    }

    /// What an L2 fault does to this call: [`FailMode::Open`] reads it as a
    /// miss (and loads), [`FailMode::Closed`] returns it.
    #[must_use]
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = Some(mode);
        self
    }

    /// The call's route through the tiers.
    pub(crate) fn route(&self) -> Route {
        route(self.skip_l1, self.skip_l2, self.fail_mode)
    }

    /// The call's load timeouts over the cache's: (soft, hard).
    pub(crate) fn timeouts(&self, s: &Settings) -> (Option<Duration>, Option<Duration>) {
        (
            self.soft_timeout.or(s.soft_timeout),
            self.hard_timeout.or(s.hard_timeout),
        )
    }

    /// What an entry loaded under these options looks like, before the loader
    /// decides anything. Fails on an invalid tag.
    pub(crate) fn shape(&self, s: &Settings) -> Result<Shape, InvalidInput> {
        Ok(Shape {
            ttl: self.ttl.unwrap_or(s.default_ttl),
            negative_ttl: self.negative_ttl.unwrap_or(s.negative_ttl),
            stale_window: self.stale_window.unwrap_or(s.stale_window),
            tags: if self.tags.is_empty() {
                None
            } else {
                Some(Tags::new(self.tags.iter().map(String::as_str))?)
            },
            cache: true,
            route: self.route(),
        })
    }
}

/// The lifetimes, tags and fate of one loaded entry: the cache's settings, then
/// the call's options, then the loader's own decisions.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) ttl: Duration,
    pub(crate) negative_ttl: Duration,
    pub(crate) stale_window: Duration,
    pub(crate) tags: Option<Tags>,
    pub(crate) cache: bool,
    /// Which tiers the load reads and writes.
    pub(crate) route: Route,
}

impl Shape {
    /// The cache's defaults.
    pub(crate) fn of(s: &Settings) -> Shape {
        Shape {
            ttl: s.default_ttl,
            negative_ttl: s.negative_ttl,
            stale_window: s.stale_window,
            tags: None,
            cache: true,
            route: Route::ALL,
        }
    }

    /// This shape with the loader's decisions applied.
    pub(crate) fn decided(mut self, d: &Decisions) -> Shape {
        if let Some(ttl) = d.ttl {
            self.ttl = ttl;
        }
        if let Some(tags) = &d.tags {
            self.tags = Some(tags.clone());
        }
        self.cache &= !d.skip;
        self
    }
}

/// What a loader decided through its [`LoadContext`].
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    ttl: Option<Duration>,
    tags: Option<Tags>,
    skip: bool,
}

/// What a loader sees and decides: the key, the value it replaces (for a
/// conditional refresh), and — from what it loaded — the entry's TTL, its tags,
/// or not to cache it at all.
///
/// ```
/// use std::time::Duration;
/// use resilient_cache::Cache;
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let prices: Cache<u64, f64> = Cache::builder("prices").build()?;
/// let price = prices
///     .get_or_load_with(9, &Default::default(), |ctx| async move {
///         let price = 12.5; // from the source
///         // Volatile records live briefly, settled ones long (adaptive caching).
///         ctx.set_ttl(if price > 10.0 { Duration::from_secs(5) } else { Duration::from_secs(600) });
///         ctx.set_tags(["product:9"]).expect("valid tag");
///         if let Some(previous) = ctx.stale_value() {
///             // e.g. send an If-None-Match with what `previous` came with
///             let _ = previous;
///         }
///         Some(price)
///     })
///     .await?;
/// assert_eq!(price, Some(12.5));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LoadContext<K, V> {
    key: K,
    stale: Option<Entry<V>>,
    decisions: Arc<Mutex<Decisions>>,
}

impl<K, V> LoadContext<K, V> {
    pub(crate) fn new(key: K, stale: Option<Entry<V>>) -> (Self, Arc<Mutex<Decisions>>) {
        let decisions = Arc::new(Mutex::new(Decisions::default()));
        (
            LoadContext {
                key,
                stale,
                decisions: Arc::clone(&decisions),
            },
            decisions,
        )
    }

    /// The key being loaded.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The key, by value.
    pub fn into_key(self) -> K {
        self.key
    }

    /// The value this load replaces, if the cache still holds one (past its TTL
    /// but within its stale window, or being refreshed ahead of expiry).
    pub fn stale_value(&self) -> Option<&V> {
        self.stale.as_ref().and_then(Entry::value)
    }

    /// The entry this load replaces, with its metadata (when it was written, when
    /// it stops being fresh, its tags).
    pub fn stale_entry(&self) -> Option<&Entry<V>> {
        self.stale.as_ref()
    }

    /// The TTL of what this load returns (still jittered), replacing the call's
    /// or the cache's.
    pub fn set_ttl(&self, ttl: Duration) {
        self.decisions.lock().ttl = Some(ttl);
    }

    /// The tags of what this load returns, replacing the call's. An invalid tag
    /// is refused here and changes nothing.
    pub fn set_tags<I, T>(&self, tags: I) -> Result<(), InvalidInput>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let tags: Vec<T> = tags.into_iter().collect();
        let tags = Tags::new(tags.iter().map(AsRef::as_ref))?;
        self.decisions.lock().tags = Some(tags);
        Ok(())
    }

    /// Do not cache what this load returns (it still answers every caller of
    /// this load).
    pub fn skip_caching(&self) {
        self.decisions.lock().skip = true;
    }
}
