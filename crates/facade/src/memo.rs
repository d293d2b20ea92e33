//! `memoize`: the read path for computations that borrow (what `#[cached]` expands to).
//!
//! [`Cache::get_or_load`] runs its loader as a task, so the loader's future must be
//! `Send + 'static`. A function body that borrows its arguments (`&self`, `&str`) is
//! neither; `memoize` runs the computation *inline*, inside the singleflight flight of
//! the calling task, so any future will do. The price: no load timeouts (the
//! computation runs as long as the function would) and no refresh-ahead (there is
//! no reusable loader to refresh with).
//!
//! A memoized computation is the source of truth, so the cache can only make it
//! faster: a cache fault (Redis down, even fail-closed) never changes what the caller
//! gets, it only costs a computation. A computation's error is never cached; the
//! caller that ran it gets it unchanged (no `Arc`, no conversion).

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{CacheKey, Codec, DecodeKey, Entry};
use cache_singleflight::Role;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::error::Error;
use crate::options::{LoadOptions, Skip};
use crate::report::Event;
use cache_tiered::{Route, TierRead};

/// What a memoized computation produced, and whether the cache may keep it.
///
/// Any value converts into a `Computed` that is cached; [`Computed::uncached`] hands
/// a value to the caller (and to callers coalesced with it) without storing it.
///
/// ```
/// use resilient_cache::Computed;
/// let kept: Computed<u32> = 7.into();
/// assert!(kept.is_cached());
/// assert!(!Computed::uncached(7).is_cached());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed<T> {
    value: T,
    cache: bool,
}

impl<T> Computed<T> {
    /// A value to return and cache.
    pub fn cached(value: T) -> Self {
        Computed { value, cache: true }
    }

    /// A value to return without caching it.
    pub fn uncached(value: T) -> Self {
        Computed {
            value,
            cache: false,
        }
    }

    /// Whether the cache keeps the value.
    #[must_use]
    pub fn is_cached(&self) -> bool {
        self.cache
    }

    /// The value.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> From<T> for Computed<T> {
    fn from(value: T) -> Self {
        Computed::cached(value)
    }
}

/// Options of [`Cache::memoize`] (and `#[cached(options = ...)]`): the TTL,
/// negative TTL, stale window and tags of what it stores, and the tiers it skips.
///
/// Two options of [`LoadOptions`](crate::LoadOptions) have no counterpart here,
/// by design: **load timeouts** (the computation runs inline and returns the
/// caller's own error type, which a timeout could not produce; wrap the body in
/// `tokio::time::timeout` to bound it) and the **fail mode** (a memoized
/// computation is the source of truth: a cache fault only costs a computation,
/// never the answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoOptions {
    /// The options that apply to a memoized computation, kept as a
    /// `LoadOptions` so both paths shape entries by the same code.
    load: LoadOptions,
}

impl MemoOptions {
    /// The cache's defaults (its default TTL, jittered; no tags).
    #[must_use]
    pub const fn new() -> Self {
        MemoOptions {
            load: LoadOptions::new(),
        }
    }

    /// The TTL of stored values (still jittered).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.load = self.load.ttl(ttl);
        self
    }

    /// The TTL of an *absent* result of [`Cache::memoize_option`] (zero: do not
    /// cache absence).
    #[must_use]
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.load = self.load.negative_ttl(ttl);
        self
    }

    /// How long past its TTL a stored value may stand in for a failed computation.
    #[must_use]
    pub fn stale_window(mut self, window: Duration) -> Self {
        self.load = self.load.stale_window(window);
        self
    }

    /// Skip L1's read, write or both (see [`LoadOptions::skip_l1`](crate::LoadOptions::skip_l1)).
    #[must_use]
    pub fn skip_l1(mut self, skip: Skip) -> Self {
        self.load = self.load.skip_l1(skip);
        self
    }

    /// Skip L2's read, write or both.
    #[must_use]
    pub fn skip_l2(mut self, skip: Skip) -> Self {
        self.load = self.load.skip_l2(skip);
        self
    }

    /// Tags of the stored entry (L1 and L2), for
    /// [`Cache::invalidate_tag`]. A computation whose tags are invalid (empty,
    /// whitespace, too long) still answers, but is not stored (logged as a
    /// warning with feature `tracing`).
    ///
    /// ```
    /// use resilient_cache::{Cache, MemoOptions};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// let options = MemoOptions::new().tags(["user:7"]);
    /// users.memoize(7, &options, async { Ok::<_, std::fmt::Error>("Ada".to_string()) }).await?;
    /// assert_eq!(users.invalidate_tag("user:7").await?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.load = self.load.tags(tags);
        self
    }

    fn route(&self) -> Route {
        self.load.route()
    }
}

#[derive(Debug)]
struct ComputationFailed;

impl fmt::Display for ComputationFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the memoized computation failed")
    }
}

impl std::error::Error for ComputationFailed {}

/// One caller's computation: not started (a follower keeps it), running in the
/// flight, or finished with the caller's own result.
enum Run<Fut, Out, E> {
    Pending(Fut),
    Running,
    Done(Result<Out, E>),
}

/// How a memoized return type maps onto cache entries.
trait Shape<V> {
    /// What the computation returns and the caller gets.
    type Out;
    /// Whether an entry can be an answer (an *absent* entry cannot, for a
    /// computation that always has a value).
    fn accepts(entry: &Entry<V>) -> bool;
    /// The caller's answer from an entry; `None` exactly when `accepts` is false.
    fn read(entry: Entry<V>) -> Option<Self::Out>;
    /// The caller's answer from a flight's shared result.
    fn from_flight(shared: Option<V>) -> Option<Self::Out>;
    /// The flight's shared result (and the stored value; `None` is *absent*).
    fn to_flight(out: &Self::Out) -> Option<V>;
}

/// A computation that always has a value: absent entries are misses.
struct Always;

impl<V: Clone> Shape<V> for Always {
    type Out = V;
    fn accepts(entry: &Entry<V>) -> bool {
        !entry.is_absent()
    }
    fn read(entry: Entry<V>) -> Option<V> {
        entry.into_value()
    }
    fn from_flight(shared: Option<V>) -> Option<V> {
        shared
    }
    fn to_flight(out: &V) -> Option<V> {
        Some(out.clone())
    }
}

/// A computation whose `None` means "no such thing": cached as *absent*.
struct Maybe;

impl<V: Clone> Shape<V> for Maybe {
    type Out = Option<V>;
    fn accepts(_: &Entry<V>) -> bool {
        true
    }
    fn read(entry: Entry<V>) -> Option<Option<V>> {
        Some(entry.into_value())
    }
    fn from_flight(shared: Option<V>) -> Option<Option<V>> {
        Some(shared)
    }
    fn to_flight(out: &Option<V>) -> Option<V> {
        out.clone()
    }
}

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// The cached value for `key`, else the result of `compute`, run once however
    /// many callers ask at the same time (coalesced callers share its value).
    ///
    /// Unlike [`get_or_load`](Self::get_or_load), `compute` may borrow (it runs inline
    /// in the caller's task) and its error type is free: an error is never cached
    /// and goes unchanged to the caller that ran the computation; callers coalesced
    /// with it then run their own. A cache fault never changes the answer (it costs
    /// a computation), a value within its stale window stands in for a failed
    /// computation, and `compute` returning [`Computed::uncached`] shares the value
    /// without storing it. No load timeouts or refresh-ahead apply. This is what
    /// [`#[cached]`](crate::cached) expands to.
    ///
    /// What inline means for cancellation and coordination: the computation is
    /// the calling task's own future, so if that caller is dropped mid-way, the
    /// computation stops with it and one coalesced caller starts its own (one
    /// more run, never one per caller); a caller that holds the future without
    /// polling it holds up the callers coalesced with it. `memoize` coordinates
    /// within this instance only (no fleet lease: a borrowed computation cannot
    /// outlive its caller to finish a lease). [`get_or_load`](Self::get_or_load)
    /// has none of these limits: its load is spawned and owns its flight.
    ///
    /// ```
    /// use resilient_cache::{Cache, MemoOptions};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let lengths: Cache<String, usize> = Cache::builder("lengths").build()?;
    /// let text = String::from("borrowed, not 'static");
    /// let compute = async { Ok::<_, std::fmt::Error>(text.len()) };
    /// let n = lengths.memoize(text.clone(), &MemoOptions::new(), compute).await?;
    /// assert_eq!(n, 21);
    /// assert_eq!(lengths.get(&text).await?, Some(21));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn memoize<Fut, T, E>(
        &self,
        key: K,
        options: &MemoOptions,
        compute: Fut,
    ) -> Result<V, E>
    where
        Fut: Future<Output = Result<T, E>>,
        T: Into<Computed<V>>,
    {
        self.memo::<Always, _, _, _>(key, options, compute).await
    }

    /// Like [`memoize`](Self::memoize) for a computation that may find nothing:
    /// `None` is cached as *absent* for the negative TTL (negative caching).
    ///
    /// ```
    /// use resilient_cache::{Cache, MemoOptions};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// let found = users
    ///     .memoize_option(404, &MemoOptions::new(), async { Ok::<_, std::io::Error>(None) })
    ///     .await?;
    /// assert_eq!(found, None);
    /// // The miss is remembered: this computation never runs.
    /// let again = users
    ///     .memoize_option(404, &MemoOptions::new(), async { Ok::<_, std::io::Error>(Some("x".into())) })
    ///     .await?;
    /// assert_eq!(again, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn memoize_option<Fut, T, E>(
        &self,
        key: K,
        options: &MemoOptions,
        compute: Fut,
    ) -> Result<Option<V>, E>
    where
        Fut: Future<Output = Result<T, E>>,
        T: Into<Computed<Option<V>>>,
    {
        self.memo::<Maybe, _, _, _>(key, options, compute).await
    }

    async fn memo<S, Fut, T, E>(
        &self,
        key: K,
        options: &MemoOptions,
        compute: Fut,
    ) -> Result<S::Out, E>
    where
        S: Shape<V>,
        Fut: Future<Output = Result<T, E>>,
        T: Into<Computed<S::Out>>,
    {
        let now = self.inner.clock.now();
        let l1 = options
            .route()
            .read_l1
            .then(|| self.inner.tiered.l1().get_sync(&key));
        let l1 = match l1.flatten() {
            Some(e) if e.is_fresh(now) && S::accepts(&e) => match S::read(e) {
                Some(out) => {
                    self.l1_hit();
                    return Ok(out);
                }
                None => None,
            },
            other => other,
        };
        let mut run = Run::Pending(compute);
        let outcome = self
            .inner
            .flights
            .work(key.clone(), || {
                self.memo_lead::<S, _, _, _>(&key, l1, options, &mut run)
            })
            .await;
        if outcome.role() == Role::Follower {
            self.inner
                .counters
                .record(&self.inner.meters, Event::Coalesced);
        }
        let shared = outcome.into_result().ok().and_then(S::from_flight);
        match (run, shared) {
            // This caller computed: its own result, unchanged.
            (Run::Done(Ok(out)), _) => Ok(out),
            // Its computation failed but a stale value stood in.
            (Run::Done(Err(_)) | Run::Pending(_), Some(out)) => Ok(out),
            (Run::Done(Err(e)), None) => Err(e),
            // A follower of a failed (or panicked) computation, or a shared result
            // this shape cannot answer with: compute for ourselves.
            (Run::Pending(compute), None) => compute.await.map(|t| t.into().into_value()),
            (Run::Running, _) => unreachable!("a computation neither finished nor unwound"),
        }
    }

    /// The flight leader's part: L1 again, L2, then the computation.
    async fn memo_lead<S, Fut, T, E>(
        &self,
        key: &K,
        l1: Option<Entry<V>>,
        options: &MemoOptions,
        run: &mut Run<Fut, S::Out, E>,
    ) -> Result<Option<V>, Error>
    where
        S: Shape<V>,
        Fut: Future<Output = Result<T, E>>,
        T: Into<Computed<S::Out>>,
    {
        let inner = &self.inner;
        let stale = match self.read_tiers(key, l1, S::accepts, options.route()).await {
            TierRead::Fresh(e, _) => return Ok(e.into_value()),
            TierRead::Missing { stale, fault } => {
                // Fail-closed L2 fault: counted, and the computation answers anyway.
                if let Some(e) = fault {
                    let _ = self.failed(e);
                }
                stale
            }
        };
        self.miss();
        let Run::Pending(compute) = std::mem::replace(run, Run::Running) else {
            return Err(Error::LoaderPanicked);
        };
        inner.counters.record(&inner.meters, Event::LoadStarted);
        let started = Instant::now();
        // Before the computation: an invalidation while it runs keeps its
        // result out of the tiers.
        let since = inner.tiered.l1().fence();
        let result = compute.await;
        let took = started.elapsed();
        inner.meters.load_duration.record(took.as_secs_f64());
        match result {
            Ok(t) => {
                inner.recompute.record(took);
                let computed = t.into();
                let keep = computed.is_cached();
                let out = computed.into_value();
                let shared = S::to_flight(&out);
                *run = Run::Done(Ok(out));
                self.count_loaded(shared.is_some());
                if keep {
                    self.store_computed(key.clone(), shared.clone(), options, since)
                        .await;
                }
                Ok(shared)
            }
            Err(e) => {
                self.load_failed();
                *run = Run::Done(Err(e));
                self.stale_or(stale, Error::Load(Arc::new(ComputationFailed)))
            }
        }
    }

    /// Stores a computed value: L1 now, L2 in the background (fail-open; in
    /// fail-closed mode both before returning, faults ignored).
    async fn store_computed(
        &self,
        key: K,
        value: Option<V>,
        options: &MemoOptions,
        since: cache_tiered::Fence,
    ) {
        let shape = match options.load.shape(&self.inner.settings) {
            Ok(shape) => shape,
            Err(e) => {
                crate::log::log_warn!(cache = %self.inner.name, error = %e, "memoized value not stored: invalid tag");
                let _ = e; // used only by the log line (feature `tracing`)
                return;
            }
        };
        let Some(entry) = self.loaded_entry(&key, value, &shape) else {
            return;
        };
        let _ = self
            .inner
            .tiered
            .write_back_routed(key, Some(entry), None, shape.route, since)
            .await;
    }
}

#[doc(hidden)]
pub mod __private {
    use std::future::Future;
    use std::time::Duration;

    use cache_core::{CacheKey, DecodeKey};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::Computed;
    use crate::cache::Cache;

    /// Pins the output type of the fn body's async block (so `?` and `return`
    /// inside it infer against the fn's return type).
    pub fn typed<T, F: Future<Output = T>>(body: F) -> F {
        body
    }

    /// Applies an `unless` predicate (a closure gets its argument type from here).
    pub fn unless<T>(predicate: impl FnOnce(&T) -> bool, value: &T) -> bool {
        predicate(value)
    }

    /// A computed value, cached unless `skip`.
    pub fn computed<T>(value: T, skip: bool) -> Computed<T> {
        if skip {
            Computed::uncached(value)
        } else {
            Computed::cached(value)
        }
    }

    /// Runs a computation without a cache.
    pub async fn uncached<F, T, E>(compute: F) -> Result<T, E>
    where
        F: Future<Output = Result<Computed<T>, E>>,
    {
        compute.await.map(Computed::into_value)
    }

    /// The implicit cache of a `#[cached]` fn without `cache = ...`: memory only.
    /// `None` (the fn then runs uncached) if the options do not build.
    pub fn implicit_cache<K, V>(
        name: &str,
        ttl: Option<Duration>,
        max_entries: Option<usize>,
    ) -> Option<Cache<K, V>>
    where
        K: CacheKey + DecodeKey + std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let mut builder = Cache::builder(name);
        if let Some(ttl) = ttl {
            builder = builder.default_ttl(ttl);
        }
        if let Some(n) = max_entries {
            builder = builder.max_entries(n);
        }
        builder.build().ok()
    }
}
