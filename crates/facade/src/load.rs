//! The read-through path past L1: one flight per key, the tier protocol's read,
//! the loader with its soft and hard timeouts, and what a load writes back.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use cache_core::{CacheKey, Codec, DecodeKey, Entry};
use cache_singleflight::{FlightError, Role};
use cache_tiered::{Fence, LoadLease, Route, Tier, TierRead};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::error::Error;
use crate::fleet::Turn;
use crate::log::log_warn;
use crate::options::{LoadContext, LoadOptions, Shape};
use crate::report::Event;

/// What the read path needs past an L1 miss (or a stale L1 entry).
pub(crate) struct L1Miss<K, V, F> {
    key: K,
    l1: Option<Entry<V>>,
    loader: F,
}

/// How a load ended, as seen by the flight's leader.
pub(crate) enum Waited<T> {
    Done(T),
    TimedOut(Duration),
}

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// The value for `key`: from L1, else L2, else `loader` — run once however many
    /// callers ask at the same time. `None` from the loader is cached as *absent* for
    /// the negative TTL. See the [crate docs](crate) for the whole read path.
    ///
    /// The load runs as a task of its own (so no caller's cancellation can split
    /// it), which is why `loader` and its future must be `Send + 'static`: move
    /// owned data or `Arc`s in. A loader that borrows (`&self`, `&repo`) fails
    /// with "borrowed data escapes" or "must outlive `'static`" — use
    /// [`memoize`](Self::memoize) (or `#[cached]`) for those, which run inline.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use resilient_cache::Cache;
    ///
    /// struct Repo;
    /// impl Repo {
    ///     async fn user(&self, id: u64) -> Option<String> { Some(format!("user {id}")) }
    /// }
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// let repo = Arc::new(Repo);
    /// let name = users
    ///     .get_or_load(7, {
    ///         let repo = Arc::clone(&repo); // owned, not borrowed
    ///         move |id| async move { repo.user(id).await }
    ///     })
    ///     .await?;
    /// assert_eq!(name.as_deref(), Some("user 7"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_or_load<F, Fut>(
        &self,
        key: K,
        loader: F,
    ) -> impl Future<Output = Result<Option<V>, Error>>
    where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = Option<V>> + Send + 'static,
    {
        self.try_get_or_load(key, move |k| {
            let load = loader(k);
            async move { Ok::<_, std::convert::Infallible>(load.await) }
        })
    }

    /// Like [`get_or_load`](Self::get_or_load) for a fallible loader. When the loader
    /// fails, a stale value within the stale window is served instead; without one,
    /// every coalesced caller gets the same [`Error::Load`].
    ///
    /// Any error that converts into `Box<dyn Error + Send + Sync>` will do: your
    /// own error types, `std::io::Error`, `anyhow::Error`, a boxed error. Callers
    /// get it back through [`Error::loader_error`] (for a concrete type).
    ///
    /// ```
    /// use resilient_cache::{Cache, Error};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// let failed = users
    ///     .try_get_or_load(7, |_| async {
    ///         Err::<Option<String>, _>(std::io::Error::other("database down"))
    ///     })
    ///     .await
    ///     .expect_err("nothing stale to serve");
    /// assert_eq!(failed.loader_error::<std::io::Error>().map(ToString::to_string).as_deref(), Some("database down"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get_or_load<F, Fut, E>(
        &self,
        key: K,
        loader: F,
    ) -> impl Future<Output = Result<Option<V>, Error>>
    where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        self.read_through(key, None, move |ctx: LoadContext<K, V>| {
            loader(ctx.into_key())
        })
    }

    /// [`get_or_load`](Self::get_or_load) with this call's [`LoadOptions`] (TTL,
    /// negative TTL, tags, stale window, load timeouts) and a loader that gets a
    /// [`LoadContext`]: the key, the value it replaces, and the say over the
    /// entry's TTL, its tags, and whether to cache it at all.
    pub fn get_or_load_with<'a, F, Fut>(
        &'a self,
        key: K,
        options: &'a LoadOptions,
        loader: F,
    ) -> impl Future<Output = Result<Option<V>, Error>> + 'a
    where
        F: FnOnce(LoadContext<K, V>) -> Fut + Send + 'static,
        Fut: Future<Output = Option<V>> + Send + 'static,
    {
        self.read_through(key, Some(options), move |ctx| {
            let load = loader(ctx);
            async move { Ok::<_, std::convert::Infallible>(load.await) }
        })
    }

    /// [`try_get_or_load`](Self::try_get_or_load) with this call's
    /// [`LoadOptions`] and a loader that gets a [`LoadContext`].
    pub fn try_get_or_load_with<'a, F, Fut, E>(
        &'a self,
        key: K,
        options: &'a LoadOptions,
        loader: F,
    ) -> impl Future<Output = Result<Option<V>, Error>> + 'a
    where
        F: FnOnce(LoadContext<K, V>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        self.read_through(key, Some(options), loader)
    }

    /// Every read-through call: `options` of `None` means the cache's.
    fn read_through<'a, F, Fut, E>(
        &'a self,
        key: K,
        options: Option<&'a LoadOptions>,
        loader: F,
    ) -> impl Future<Output = Result<Option<V>, Error>> + 'a
    where
        F: FnOnce(LoadContext<K, V>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        // By hand, like `get`: the first poll answers a fresh L1 hit; only a miss
        // boxes the rest of the read path.
        let mut args = Some((key, loader));
        let mut rest = None;
        std::future::poll_fn(move |cx| {
            let rest = match &mut rest {
                Some(rest) => rest,
                None => {
                    let Some((key, loader)) = args.take() else {
                        panic!("`try_get_or_load` polled after it completed");
                    };
                    match self.l1_or_miss(key, loader, options) {
                        Ok(value) => return Poll::Ready(Ok(value)),
                        Err(L1Miss { key, l1, loader }) => {
                            let options = options.cloned().unwrap_or_default();
                            rest.insert(Box::pin(self.load_through(key, l1, loader, options)))
                        }
                    }
                }
            };
            rest.as_mut().poll(cx)
        })
    }

    /// A fresh L1 hit's value (starting a background refresh when one is due), or
    /// what the rest of the read path needs.
    fn l1_or_miss<F, Fut, E>(
        &self,
        key: K,
        loader: F,
        options: Option<&LoadOptions>,
    ) -> Result<Option<V>, L1Miss<K, V, F>>
    where
        F: FnOnce(LoadContext<K, V>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        if self.bloom_rejects(&key) {
            return Ok(None);
        }
        if options.is_some_and(|o| !o.route().read_l1) {
            return Err(L1Miss {
                key,
                l1: None,
                loader,
            });
        }
        let now = self.inner.clock.recent();
        let l1 = self.inner.tiered.l1().get_sync(&key);
        if let Some(e) = &l1
            && e.is_fresh(now)
        {
            self.l1_hit();
            let value = e.value().cloned();
            if let Some(kind) = self.refresh_due(e, now) {
                self.spawn_refresh(key, l1.clone(), kind, loader, options);
            }
            return Ok(value);
        }
        Err(L1Miss { key, l1, loader })
    }

    /// `try_get_or_load` past an L1 miss: one flight per key, led by `lead`.
    async fn load_through<F, Fut, E>(
        &self,
        key: K,
        l1: Option<Entry<V>>,
        loader: F,
        options: LoadOptions,
    ) -> Result<Option<V>, Error>
    where
        F: FnOnce(LoadContext<K, V>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        // An invalid tag fails the call before anything loads.
        let shape = options
            .shape(&self.inner.settings)
            .map_err(|e| self.failed(cache_core::CacheError::from(e)))?;
        // Stage one, inline: the leader looks in L1 again and in L2 for everyone
        // (no task, so an L2 hit costs one round trip). A cancelled leader here
        // hands over to a waiting caller: that costs an L2 read, never a load.
        let this = self.clone();
        let outcome = self
            .inner
            .flights
            .work(key.clone(), move || {
                this.lead(key, l1, loader, (options, shape))
            })
            .await;
        self.count_follower(outcome.role());
        outcome
            .into_result()
            .map_err(|e| self.failed(flight_error(e)))
    }

    /// Stage two: the load, in a flight that belongs to the load, not to a
    /// caller — it runs as a task (fleet lease, loader, write), so a caller that
    /// goes away (a client disconnect, a `select!` timeout) neither hands the
    /// key to another caller's loader nor lets a new caller start a second load:
    /// whoever comes next finds L2 empty and joins this flight.
    async fn load_detached<F, Fut, E>(
        &self,
        key: K,
        stale: Option<Entry<V>>,
        loader: F,
        how: (LoadOptions, Shape),
    ) -> Result<Option<V>, Error>
    where
        F: FnOnce(LoadContext<K, V>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let this = self.clone();
        let outcome = self
            .inner
            .loads
            .work_detached(
                key.clone(),
                move || async move {
                    // Before anything is read for this load: a value read
                    // while its key is invalidated is not kept (`Fence`).
                    let since = this.inner.tiered.l1().fence();
                    // A call that skips L2 leaves nothing there to wait for.
                    let turn = if how.1.route.uses_l2() {
                        this.fleet_turn(&key, how.1.route.write_l1, since).await
                    } else {
                        Turn::Load(None)
                    };
                    match turn {
                        Turn::Loaded(value) => Ok(value),
                        Turn::Load(lease) => {
                            this.load(key, stale, loader, (lease, since), how).await
                        }
                    }
                },
                spawn_load,
            )
            .await;
        self.count_follower(outcome.role());
        outcome.into_result().map_err(flight_error)
    }

    /// A caller that joined someone else's flight counts as coalesced.
    pub(crate) fn count_follower(&self, role: Role) {
        if role == Role::Follower {
            self.inner
                .counters
                .record(&self.inner.meters, Event::Coalesced);
        }
    }

    /// A flight leader's look at the tiers ([`TieredStore::read`]), with the
    /// hit counted by the tier that answered.
    pub(crate) async fn read_tiers(
        &self,
        key: &K,
        stale: Option<Entry<V>>,
        usable: impl Fn(&Entry<V>) -> bool,
        route: Route,
    ) -> TierRead<V> {
        let read = self
            .inner
            .tiered
            .read_routed(key, stale, usable, route)
            .await;
        match &read {
            TierRead::Fresh(_, Tier::L1) => self.l1_hit(),
            TierRead::Fresh(_, Tier::L2) => self.l2_hit(),
            TierRead::Missing { .. } => {}
        }
        read
    }

    /// The flight leader's part of the read path: L1 again, L2, then the loader.
    async fn lead<F, Fut, E>(
        self,
        key: K,
        l1: Option<Entry<V>>,
        loader: F,
        how: (LoadOptions, Shape),
    ) -> Result<Option<V>, Error>
    where
        F: FnOnce(LoadContext<K, V>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let stale = match self.read_tiers(&key, l1, |_| true, how.1.route).await {
            TierRead::Fresh(e, _) => return Ok(e.into_value()),
            TierRead::Missing { fault: Some(e), .. } => return Err(e.into()),
            TierRead::Missing { stale, fault: None } => stale,
        };
        self.miss();
        self.load_detached(key, stale, loader, how).await
    }

    /// [`load_untraced`](Self::load_untraced) in a `cache_load` span (feature
    /// `tracing`) that records the cache name and the outcome, never the key.
    async fn load<F, Fut, E>(
        &self,
        key: K,
        stale: Option<Entry<V>>,
        loader: F,
        (lease, since): (Option<LoadLease>, Fence),
        how: (LoadOptions, Shape),
    ) -> Result<Option<V>, Error>
    where
        F: FnOnce(LoadContext<K, V>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        #[cfg(feature = "tracing")]
        {
            use tracing::Instrument;
            let span = tracing::info_span!(
                "cache_load",
                cache = %self.inner.name,
                outcome = tracing::field::Empty
            );
            let result = self
                .load_untraced(key, stale, loader, (lease, since), how)
                .instrument(span.clone())
                .await;
            span.record("outcome", crate::log::outcome(&result));
            result
        }
        #[cfg(not(feature = "tracing"))]
        {
            self.load_untraced(key, stale, loader, (lease, since), how)
                .await
        }
    }

    /// Runs the loader as a task that also writes its result, so neither a
    /// cancelled caller nor a soft timeout loses the load. The answer is handed over
    /// as soon as L1 holds it; the L2 write finishes in the task (fail-open), so a
    /// slow Redis does not delay the caller a second time.
    async fn load_untraced<F, Fut, E>(
        &self,
        key: K,
        stale: Option<Entry<V>>,
        loader: F,
        (lease, since): (Option<LoadLease>, Fence),
        how: (LoadOptions, Shape),
    ) -> Result<Option<V>, Error>
    where
        F: FnOnce(LoadContext<K, V>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let inner = &self.inner;
        inner.counters.record(&inner.meters, Event::LoadStarted);
        let started = Instant::now();
        let (options, shape) = how;
        let (ctx, decisions) = LoadContext::new(key.clone(), stale.clone());
        let fut = loader(ctx);
        let writer = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lease_ttl = self.fleet_lease_ttl().unwrap_or_default();
        let task = tokio::spawn(async move {
            let tiered = &writer.inner.tiered;
            // Under a fleet lease, kept alive while the loader runs and given
            // back once L2 holds the value (or at once, on failure).
            let result = tiered.holding(lease.as_ref(), lease_ttl, fut).await;
            let value = match result {
                Ok(value) => value,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    let _ = tiered
                        .write_back_routed(key, None, lease, shape.route, since)
                        .await;
                    return;
                }
            };
            let shape = shape.decided(&decisions.lock());
            let entry = writer.loaded_entry(&key, value.clone(), &shape);
            // Fail-open answers once L1 holds it (L2 follows in the background).
            let written = tiered
                .write_back_routed(key, entry, lease, shape.route, since)
                .await;
            let _ = tx.send(Ok((value, written)));
        });
        let (soft, hard) = options.timeouts(&inner.settings);
        let soft = soft.filter(|_| stale.is_some());
        let limit = soft.or(hard);
        let waited = match limit {
            Some(limit) => match tokio::time::timeout(limit, rx).await {
                Ok(done) => Waited::Done(done),
                Err(_) => Waited::TimedOut(limit),
            },
            None => Waited::Done(rx.await),
        };
        let took = started.elapsed();
        inner.meters.load_duration.record(took.as_secs_f64());
        if took >= inner.settings.slow_load {
            log_warn!(cache = %inner.name, took_ms = took.as_millis() as u64, "slow load: the source took longer than the slow-load threshold");
        }
        match waited {
            Waited::Done(Ok(Ok((value, written)))) => {
                inner.recompute.record(took);
                self.count_loaded(value.is_some());
                match written {
                    Err(e) if e.is_backend_fault() => Err(e.into()),
                    // A value the cache refuses (too large, …) is still the answer.
                    _ => Ok(value),
                }
            }
            Waited::Done(Ok(Err(e))) => {
                self.load_failed();
                self.stale_or(stale, Error::Load(Arc::from(e.into())))
            }
            Waited::Done(Err(_panicked)) => {
                inner.counters.record(&inner.meters, Event::LoadPanic);
                self.stale_or(stale, Error::LoaderPanicked)
            }
            Waited::TimedOut(after) => {
                self.load_timed_out();
                match (soft, hard) {
                    // Serve stale now; the load goes on, bounded by the hard timeout.
                    (Some(soft), Some(hard)) => {
                        let abort = task.abort_handle();
                        tokio::spawn(async move {
                            let rest = hard.saturating_sub(soft);
                            if tokio::time::timeout(rest, task).await.is_err() {
                                abort.abort();
                            }
                        });
                    }
                    (Some(_), None) => {}
                    (None, _) => task.abort(),
                }
                self.stale_or(stale, Error::LoadTimeout(after))
            }
        }
    }

    pub(crate) fn stale_or(
        &self,
        stale: Option<Entry<V>>,
        error: Error,
    ) -> Result<Option<V>, Error> {
        let now = self.inner.clock.now();
        match stale {
            Some(e) if !e.is_expired(now) => {
                self.inner
                    .counters
                    .record(&self.inner.meters, Event::StaleServed);
                Ok(e.into_value())
            }
            _ => Err(error),
        }
    }

    /// Counts a loaded key by outcome: found or absent.
    pub(crate) fn count_loaded(&self, found: bool) {
        let event = if found {
            Event::LoadOk
        } else {
            Event::LoadAbsent
        };
        self.inner.counters.record(&self.inner.meters, event);
    }

    /// Counts a load whose loader returned an error.
    pub(crate) fn load_failed(&self) {
        self.inner
            .counters
            .record(&self.inner.meters, Event::LoadError);
    }

    /// Counts a load that hit its timeout.
    pub(crate) fn load_timed_out(&self) {
        self.inner
            .counters
            .record(&self.inner.meters, Event::LoadTimeout);
    }

    /// What a load of `key` writes, shaped by the cache, the call and the loader:
    /// a value joins the bloom guard and gets the jittered TTL; *absent* gets the
    /// negative TTL (or nothing when it is zero); both carry the shape's tags.
    /// `None` when nothing is to be cached.
    pub(crate) fn loaded_entry(
        &self,
        key: &K,
        value: Option<V>,
        shape: &Shape,
    ) -> Option<Entry<V>> {
        if !shape.cache {
            return None;
        }
        if value.is_some()
            && let Some(bloom) = &self.inner.bloom
        {
            bloom.insert(key);
        }
        let s = &self.inner.settings;
        let now = self.write_time();
        let entry = match value {
            Some(v) => {
                Entry::new(v, now, s.jitter.apply(shape.ttl)).with_stale_window(shape.stale_window)
            }
            None if shape.negative_ttl.is_zero() => return None,
            None => Entry::absent(now, s.jitter.apply(shape.negative_ttl)),
        };
        Some(match &shape.tags {
            Some(tags) => entry.with_tag_set(tags.clone()),
            None => entry,
        })
    }

    /// When an entry made now says it was created: the clock, but never before
    /// the clear epoch this instance knows, so a write right after a `clear` (in
    /// the same millisecond) is not taken for one of the entries it cleared.
    fn write_time(&self) -> cache_core::Timestamp {
        self.inner.clock.now().max(self.inner.tiered.clear_epoch())
    }

    pub(crate) fn make_entry(&self, value: Option<V>, ttl: Duration) -> Option<Entry<V>> {
        let s = &self.inner.settings;
        let now = self.write_time();
        match value {
            Some(v) => {
                Some(Entry::new(v, now, s.jitter.apply(ttl)).with_stale_window(s.stale_window))
            }
            None if s.negative_ttl.is_zero() => None,
            None => Some(Entry::absent(now, s.jitter.apply(s.negative_ttl))),
        }
    }
}

/// Runs a flight's detached work on the current runtime, in the caller's span.
pub(crate) fn spawn_load(work: cache_singleflight::Detached) {
    #[cfg(feature = "tracing")]
    let work = tracing::Instrument::in_current_span(work);
    tokio::spawn(work);
}

/// A flight's failure as the caller's error.
pub(crate) fn flight_error(e: FlightError<Error>) -> Error {
    match e {
        FlightError::Failed(e) => (*e).clone(),
        _ => Error::LoaderPanicked,
    }
}
