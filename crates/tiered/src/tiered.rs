//! The tiered store.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cache_breaker::{CircuitBreaker, State};
use cache_core::{
    CacheError, CacheKey, Codec, ConfigError, DecodeKey, Entry, HealthStatus, Postcard, Store,
    StoreHealth,
};
use cache_store_memory::MemoryStore;
use cache_store_redis::{Action, BusEvent, BusStatus, InvalidationBus, RedisStore};
use parking_lot::Mutex;

use crate::log::{log_info, log_warn};
use crate::protocol::TierRead;
use crate::recovery::{Pending, Pushed, RecoveryQueue};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Names of the L2 metrics this crate emits through the `metrics` facade (the
/// catalogue, with help texts, is `cache_metrics::CATALOG`).
pub mod metric_names {
    pub use cache_metrics::names::{FAIL_OPEN, L2_ERRORS, L2_OP_DURATION};
}

/// The health of an L1 + L2 cache from the L2's own health, its breaker, the
/// fail mode and whether other instances can hear from this one; the one rule
/// shared by [`TieredStore`]'s `health` and the facade.
///
/// Healthy only when L2 is healthy (answers within half its op timeout), the
/// breaker is closed, the invalidation bus (if any) is connected and no write
/// waits in the recovery queue. Unhealthy only when fail-closed and L2 does not
/// answer, since then callers get errors. Everything in between is degraded: the
/// cache answers from L1 and the loader, but other instances may serve copies
/// this one has invalidated.
#[must_use]
pub fn combined_health(
    l2: HealthStatus,
    breaker: State,
    mode: FailMode,
    coherent: bool,
) -> HealthStatus {
    match (l2, breaker, mode, coherent) {
        (HealthStatus::Unhealthy, _, FailMode::Closed, _) => HealthStatus::Unhealthy,
        (HealthStatus::Healthy, State::Closed, _, true) => HealthStatus::Healthy,
        _ => HealthStatus::Degraded,
    }
}

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

impl Default for GapPolicy {
    fn default() -> Self {
        DEFAULT_GAP_POLICY
    }
}

/// Consecutive L2 failures that open the default breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;

/// What an L2 fault does to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Degrade to L1 (and the loader): reads miss, writes are counted, not thrown.
    #[default]
    Open,
    /// Return the fault to the caller.
    Closed,
}

/// Counters of a [`TieredStore`] since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TieredStats {
    /// Reads answered by L1 with a fresh entry.
    pub l1_hits: u64,
    /// Reads answered by L2 (and backfilled into L1).
    pub l2_hits: u64,
    /// Reads that found nothing usable in either tier.
    pub misses: u64,
    /// L2 calls that failed with a backend fault (including timeouts).
    pub l2_errors: u64,
    /// Of those, timeouts.
    pub l2_timeouts: u64,
    /// L2 calls skipped because the breaker was open.
    pub l2_rejected: u64,
    /// Faults absorbed by fail-open (reads degraded to a miss, writes not thrown).
    pub fail_open: u64,
    /// Invalidation messages from other instances applied to L1.
    pub bus_messages: u64,
    /// Invalidations read after the bus reconnected that were published while it
    /// was away (replayed, not lost).
    pub bus_replayed: u64,
    /// Times the bus connection was re-established after it was lost.
    pub bus_reconnects: u64,
    /// Gaps on the bus: history really lost, handled by the [`GapPolicy`].
    pub bus_gaps: u64,
    /// Publishes that failed (queued for replay).
    pub publish_errors: u64,
    /// Writes and invalidations waiting in the recovery queue for L2.
    pub recovery_pending: u64,
    /// Operations the recovery queue applied to L2 (and published) after an outage.
    pub recovery_replayed: u64,
    /// Operations dropped from a full recovery queue (or refused by L2 on replay).
    pub recovery_dropped: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) l1_hits: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    l2_errors: AtomicU64,
    l2_timeouts: AtomicU64,
    l2_rejected: AtomicU64,
    fail_open: AtomicU64,
    bus_messages: AtomicU64,
    bus_gaps: AtomicU64,
    publish_errors: AtomicU64,
    recovery_replayed: AtomicU64,
    recovery_dropped: AtomicU64,
    /// Limits the L2 fault and queue overflow warnings.
    fault_logged: OncePerSecond,
    drop_logged: OncePerSecond,
}

/// Lets one log event through per second (the time is the L1 clock's, in ms).
#[derive(Default)]
struct OncePerSecond(AtomicU64);

impl OncePerSecond {
    fn allow(&self, now_ms: u64) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        (last == 0 || now_ms >= last.saturating_add(1_000))
            && self
                .0
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct L2<C> {
    store: RedisStore<C>,
    breaker: Arc<CircuitBreaker>,
    bus: Option<InvalidationBus<C>>,
}

/// The L2 operations timed in `cache_l2_op_duration_seconds{op}`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum L2Op {
    Get,
    Put,
    PutMany,
    Publish,
    Remove,
    GetMany,
    RemoveMany,
    InvalidateTag,
    InvalidatePrefix,
}

impl L2Op {
    const COUNT: usize = 9;
    const ALL: [L2Op; L2Op::COUNT] = [
        L2Op::Get,
        L2Op::Put,
        L2Op::PutMany,
        L2Op::Publish,
        L2Op::Remove,
        L2Op::GetMany,
        L2Op::RemoveMany,
        L2Op::InvalidateTag,
        L2Op::InvalidatePrefix,
    ];

    fn as_str(self) -> &'static str {
        match self {
            L2Op::Get => "get",
            L2Op::Put => "put",
            L2Op::PutMany => "put_many",
            L2Op::Publish => "publish",
            L2Op::Remove => "remove",
            L2Op::GetMany => "get_many",
            L2Op::RemoveMany => "remove_many",
            L2Op::InvalidateTag => "invalidate_tag",
            L2Op::InvalidatePrefix => "invalidate_prefix",
        }
    }
}

/// One histogram handle per [`L2Op`], registered when the store is built, so an
/// operation records its duration without building a metric key.
fn op_durations(name: &Arc<str>) -> [metrics::Histogram; L2Op::COUNT] {
    L2Op::ALL.map(|op| {
        metrics::histogram!(
            metric_names::L2_OP_DURATION,
            "cache" => name.to_string(),
            "op" => op.as_str()
        )
    })
}

pub(crate) struct Inner<K, V, C> {
    name: Arc<str>,
    op_durations: [metrics::Histogram; L2Op::COUNT],
    pub(crate) l1: MemoryStore<K, V>,
    l2: Option<L2<C>>,
    mode: FailMode,
    pub(crate) counters: Counters,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    bus_status: Mutex<Option<BusStatus>>,
    gap_policy: GapPolicy,
    recovery: Mutex<RecoveryQueue<K, V>>,
    /// Wakes the recovery worker early when a write joins the queue.
    recovery_wake: Arc<tokio::sync::Notify>,
}

impl<K, V, C> Drop for Inner<K, V, C> {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get_mut().take() {
            task.abort();
        }
    }
}

/// L1 + optional L2 as one store; see the [crate docs](crate). Cheap to clone.
pub struct TieredStore<K, V, C = Postcard> {
    pub(crate) inner: Arc<Inner<K, V, C>>,
}

impl<K, V, C> Clone for TieredStore<K, V, C> {
    fn clone(&self) -> Self {
        TieredStore {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, C> std::fmt::Debug for TieredStore<K, V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("l2", &self.inner.l2.is_some())
            .field("mode", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

/// Builder of a [`TieredStore`]; see [`TieredStore::builder`].
#[must_use = "a builder does nothing until `build()` is called"]
pub struct TieredBuilder<K, V, C = Postcard> {
    name: String,
    l1: MemoryStore<K, V>,
    l2: Option<RedisStore<C>>,
    breaker: Option<CircuitBreaker>,
    mode: FailMode,
    bus: bool,
    bus_keepalive: Duration,
    gap_policy: GapPolicy,
    recovery_capacity: usize,
}

impl<K, V> TieredStore<K, V, Postcard> {
    /// Starts a builder around an L1.
    pub fn builder(l1: MemoryStore<K, V>) -> TieredBuilder<K, V, Postcard> {
        TieredBuilder {
            name: "default".to_owned(),
            l1,
            l2: None,
            breaker: None,
            mode: FailMode::Open,
            bus: true,
            bus_keepalive: cache_store_redis::DEFAULT_KEEPALIVE,
            gap_policy: DEFAULT_GAP_POLICY,
            recovery_capacity: DEFAULT_RECOVERY_CAPACITY,
        }
    }
}

impl<K, V, C> TieredBuilder<K, V, C> {
    /// The L2 (without one, the store is the L1 alone — a complete configuration).
    pub fn l2<C2>(self, l2: RedisStore<C2>) -> TieredBuilder<K, V, C2> {
        TieredBuilder {
            name: self.name,
            l1: self.l1,
            l2: Some(l2),
            breaker: self.breaker,
            mode: self.mode,
            bus: self.bus,
            bus_keepalive: self.bus_keepalive,
            gap_policy: self.gap_policy,
            recovery_capacity: self.recovery_capacity,
        }
    }

    /// The cache name used as the `cache` label of the L2 metrics (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the codec type parameter without adding an L2 — for an L1-only store
    /// that must have the same type as stores with a non-default codec.
    pub fn codec_type<C2>(self) -> TieredBuilder<K, V, C2> {
        TieredBuilder {
            name: self.name,
            l1: self.l1,
            l2: None,
            breaker: self.breaker,
            mode: self.mode,
            bus: self.bus,
            bus_keepalive: self.bus_keepalive,
            gap_policy: self.gap_policy,
            recovery_capacity: self.recovery_capacity,
        }
    }

    /// The breaker guarding L2 (default: open after 5 consecutive failures, probe
    /// after 5 s).
    pub fn breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Fail-open (default) or fail-closed.
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.mode = mode;
        self
    }

    /// Whether to publish and listen on the invalidation bus (default `true` when
    /// there is an L2). Listening needs a tokio runtime at build time.
    pub fn invalidation_bus(mut self, enabled: bool) -> Self {
        self.bus = enabled;
        self
    }

    /// How long the bus's idle blocking read waits before reading again
    /// (default 1 s); a dead connection is noticed within this plus the connect
    /// timeout.
    pub fn bus_keepalive(mut self, keepalive: Duration) -> Self {
        self.bus_keepalive = keepalive;
        self
    }

    /// What to do with L1 when the bus reports a gap (default
    /// [`DEFAULT_GAP_POLICY`]); see [`GapPolicy`].
    pub fn gap_policy(mut self, policy: GapPolicy) -> Self {
        self.gap_policy = policy;
        self
    }

    /// How many writes and invalidations (one per key, tag or prefix) the
    /// recovery queue holds while L2 is unreachable (default
    /// [`DEFAULT_RECOVERY_CAPACITY`]); when full, the oldest is dropped and
    /// counted. At least 1.
    pub fn recovery_capacity(mut self, capacity: usize) -> Self {
        self.recovery_capacity = capacity;
        self
    }
}

impl<K, V, C> TieredBuilder<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Validates and builds; starts the bus listener when there is an L2 and the bus
    /// is enabled.
    pub fn build(self) -> Result<TieredStore<K, V, C>, ConfigError> {
        let breaker = match self.breaker {
            Some(b) => b,
            None => CircuitBreaker::builder()
                .name("l2")
                .consecutive_failures(DEFAULT_BREAKER_FAILURES)
                .build()
                .map_err(|e| ConfigError::new("breaker", e.to_string()))?,
        };
        if self.recovery_capacity == 0 {
            return Err(ConfigError::new(
                "recovery_capacity",
                "must be at least 1 (the queue that keeps writes made during an outage)",
            ));
        }
        if self.bus_keepalive < Duration::from_millis(10) {
            return Err(ConfigError::new(
                "bus_keepalive",
                "must be at least 10 ms (each keep-alive is one blocking read on Redis)",
            ));
        }
        let listen = self.l2.is_some() && self.bus;
        if listen && tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new(
                "invalidation_bus",
                "listening needs a running tokio runtime: build inside one, or disable the bus",
            ));
        }
        let l2 = self.l2.map(|store| L2 {
            bus: self.bus.then(|| store.bus().keepalive(self.bus_keepalive)),
            store,
            breaker: Arc::new(breaker),
        });
        let name: Arc<str> = self.name.into();
        let store = TieredStore {
            inner: Arc::new(Inner {
                op_durations: op_durations(&name),
                name,
                l1: self.l1,
                l2,
                mode: self.mode,
                counters: Counters::default(),
                listener: Mutex::new(None),
                bus_status: Mutex::new(None),
                gap_policy: self.gap_policy,
                recovery: Mutex::new(RecoveryQueue::new(self.recovery_capacity)),
                recovery_wake: Arc::new(tokio::sync::Notify::new()),
            }),
        };
        if listen {
            store.start_listener();
        }
        Ok(store)
    }
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// The L1.
    #[must_use]
    pub fn l1(&self) -> &MemoryStore<K, V> {
        &self.inner.l1
    }

    /// The L2, if configured.
    #[must_use]
    pub fn l2(&self) -> Option<&RedisStore<C>> {
        self.inner.l2.as_ref().map(|l2| &l2.store)
    }

    /// The breaker guarding L2, if there is one.
    #[must_use]
    pub fn breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.inner.l2.as_ref().map(|l2| &l2.breaker)
    }

    /// The fail mode.
    #[must_use]
    pub fn fail_mode(&self) -> FailMode {
        self.inner.mode
    }

    /// Whether the bus listener is currently connected (`false` without a bus).
    #[must_use]
    pub fn bus_connected(&self) -> bool {
        self.inner
            .bus_status
            .lock()
            .as_ref()
            .is_some_and(BusStatus::is_connected)
    }

    /// Whether this store publishes and listens on an invalidation bus.
    #[must_use]
    pub fn has_bus(&self) -> bool {
        self.inner.l2.as_ref().is_some_and(|l2| l2.bus.is_some())
    }

    /// The gap policy in force.
    #[must_use]
    pub fn gap_policy(&self) -> GapPolicy {
        self.inner.gap_policy
    }

    /// Writes and invalidations waiting in the recovery queue for L2.
    #[must_use]
    pub fn recovery_pending(&self) -> usize {
        self.inner.recovery.lock().len()
    }

    /// Counters since the store was built.
    #[must_use]
    pub fn stats(&self) -> TieredStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let bus = self
            .inner
            .bus_status
            .lock()
            .as_ref()
            .map(BusStatus::stats)
            .unwrap_or_default();
        TieredStats {
            l1_hits: get(&c.l1_hits),
            l2_hits: get(&c.l2_hits),
            misses: get(&c.misses),
            l2_errors: get(&c.l2_errors),
            l2_timeouts: get(&c.l2_timeouts),
            l2_rejected: get(&c.l2_rejected),
            fail_open: get(&c.fail_open),
            bus_messages: get(&c.bus_messages),
            bus_replayed: bus.replayed,
            bus_reconnects: bus.connects.saturating_sub(1),
            bus_gaps: get(&c.bus_gaps),
            publish_errors: get(&c.publish_errors),
            recovery_pending: self.recovery_pending() as u64,
            recovery_replayed: get(&c.recovery_replayed),
            recovery_dropped: get(&c.recovery_dropped),
        }
    }

    fn start_listener(&self) {
        let Some(bus) = self.inner.l2.as_ref().and_then(|l2| l2.bus.clone()) else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut sub = bus.subscribe().await;
            match Weak::upgrade(&weak) {
                Some(inner) => *inner.bus_status.lock() = Some(sub.status()),
                None => return,
            }
            while let Some(event) = sub.recv().await {
                let Some(inner) = Weak::upgrade(&weak) else {
                    return;
                };
                apply_event(&inner, event);
            }
        });
        *self.inner.listener.lock() = Some(task);
    }

    /// Writes L1 only (no publishing). When L1 refuses the entry (a key or
    /// weight over its limits), whatever L1 held for the key is dropped, so an
    /// older value is never served in place of the one just written to L2.
    pub fn fill_l1(&self, key: K, entry: Entry<V>) -> Result<(), CacheError> {
        let l1 = &self.inner.l1;
        match l1.put_sync(key.clone(), entry) {
            Ok(()) => Ok(()),
            Err(e) => {
                l1.remove_sync(&key);
                Err(e)
            }
        }
    }

    /// Runs `f` on L2 through the breaker. `Ok(None)`: no L2, or a fault absorbed by
    /// fail-open.
    pub(crate) async fn guarded<'a, T, F, Fut>(
        &'a self,
        op: L2Op,
        f: F,
    ) -> Result<Option<T>, CacheError>
    where
        F: FnOnce(&'a RedisStore<C>) -> Fut,
        Fut: std::future::Future<Output = Result<T, CacheError>>,
    {
        let Some(l2) = &self.inner.l2 else {
            return Ok(None);
        };
        let counters = &self.inner.counters;
        let Ok(permit) = l2.breaker.try_acquire() else {
            bump(&counters.l2_rejected);
            self.l2_error_metric("rejected");
            return self.degrade(CacheError::Unavailable {
                backend: "redis",
                message: "skipped: the circuit breaker is open".into(),
                source: None,
            });
        };
        let started = std::time::Instant::now();
        let result = f(&l2.store).await;
        self.inner.op_durations[op as usize].record(started.elapsed().as_secs_f64());
        match result {
            Ok(v) => {
                permit.success();
                Ok(Some(v))
            }
            Err(e) if e.is_backend_fault() => {
                permit.failure();
                if counters
                    .fault_logged
                    .allow(self.inner.l1.clock().now().as_millis())
                {
                    log_warn!(cache = %self.inner.name, op = op.as_str(), error = %e, "Redis (L2) operation failed; serving from L1 and the loader (at most one such warning a second)");
                }
                bump(&counters.l2_errors);
                if matches!(e, CacheError::Timeout { .. }) {
                    bump(&counters.l2_timeouts);
                }
                self.l2_error_metric(e.kind().as_str());
                self.degrade(e)
            }
            Err(e) => {
                permit.ignore();
                Err(e)
            }
        }
    }

    fn l2_error_metric(&self, kind: &'static str) {
        metrics::counter!(
            metric_names::L2_ERRORS,
            "cache" => self.inner.name.clone(),
            "kind" => kind
        )
        .increment(1);
    }

    fn degrade<T>(&self, e: CacheError) -> Result<Option<T>, CacheError> {
        match self.inner.mode {
            FailMode::Open => {
                bump(&self.inner.counters.fail_open);
                metrics::counter!(metric_names::FAIL_OPEN, "cache" => self.inner.name.clone())
                    .increment(1);
                Ok(None)
            }
            FailMode::Closed => Err(e),
        }
    }

    /// Tells other instances to drop their L1 copies. `Ok(true)` when published;
    /// `Ok(false)` (fail-open) or the error (fail-closed) when not, counted.
    async fn publish(&self, action: Action) -> Result<bool, CacheError> {
        let Some(bus) = self.inner.l2.as_ref().and_then(|l2| l2.bus.as_ref()) else {
            return Ok(true);
        };
        let published = self
            .guarded(L2Op::Publish, |_| async move { bus.publish(action).await })
            .await;
        match published {
            Ok(Some(_)) => Ok(true),
            Ok(None) => {
                bump(&self.inner.counters.publish_errors);
                Ok(false)
            }
            Err(e) => {
                bump(&self.inner.counters.publish_errors);
                Err(e)
            }
        }
    }

    /// Sends a write or invalidation to L2 and the bus; when either cannot take it
    /// now, or earlier operations still wait, it joins the recovery queue and is
    /// replayed (applied to L2, published) once Redis answers again. Returns what
    /// L2 reported (0 when queued). Fail-closed, an L2 fault is returned, and an
    /// invalidation is queued all the same (this instance's L1 already changed).
    async fn write_l2(&self, op: Pending<K, V>) -> Result<u64, CacheError> {
        let (l2_op, action) = (op.l2_op(), op.action());
        let send = op.clone();
        let now = self.inner.l1.clock().now();
        self.write_batch(l2_op, vec![op], action, |l2| async move {
            send.apply_l2(l2, now).await
        })
        .await
    }

    /// [`write_l2`](Self::write_l2) for operations that go to L2 as one batch
    /// (`send`) and to the bus as one message.
    async fn write_batch<'a, F, Fut>(
        &'a self,
        l2_op: L2Op,
        ops: Vec<Pending<K, V>>,
        action: Action,
        send: F,
    ) -> Result<u64, CacheError>
    where
        F: FnOnce(&'a RedisStore<C>) -> Fut,
        Fut: std::future::Future<Output = Result<u64, CacheError>>,
    {
        if self.inner.l2.is_none() || ops.is_empty() {
            return Ok(0);
        }
        if self.inner.recovery.lock().is_pending() {
            self.enqueue_all(ops);
            return Ok(0);
        }
        match self.guarded(l2_op, send).await {
            Ok(Some(n)) => match self.publish(action).await {
                Ok(true) => Ok(n),
                Ok(false) => {
                    self.enqueue_all(ops);
                    Ok(n)
                }
                Err(e) => {
                    self.enqueue_all(ops);
                    Err(e)
                }
            },
            Ok(None) => {
                self.enqueue_all(ops);
                Ok(0)
            }
            Err(e) => {
                // Fail-closed: a put that failed wrote nothing anywhere (the
                // caller is told); an invalidation already changed this L1.
                if e.is_backend_fault() {
                    self.enqueue_all(
                        ops.into_iter()
                            .filter(|op| !matches!(op, Pending::Put(..)))
                            .collect(),
                    );
                }
                Err(e)
            }
        }
    }

    fn enqueue_all(&self, ops: Vec<Pending<K, V>>) {
        for op in ops {
            self.enqueue(op);
        }
    }

    /// Why other instances may not hear from this one right now, if they may not:
    /// the bus is not connected, or writes wait in the recovery queue.
    #[must_use]
    pub fn incoherence(&self) -> Option<String> {
        let l2 = self.inner.l2.as_ref()?;
        let mut why = Vec::new();
        if l2.bus.is_some() && !self.bus_connected() {
            why.push("invalidation bus not connected".to_owned());
        }
        let pending = self.recovery_pending();
        if pending > 0 {
            why.push(format!(
                "{pending} writes waiting for L2 in the recovery queue"
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// Adds `op` to the recovery queue and makes sure a worker drains it.
    fn enqueue(&self, op: Pending<K, V>) {
        let start = {
            let at = self.inner.l1.clock().now();
            let mut q = self.inner.recovery.lock();
            if q.push(op, at) == Pushed::DroppedOldest {
                bump(&self.inner.counters.recovery_dropped);
                if self.inner.counters.drop_logged.allow(at.as_millis()) {
                    log_warn!(cache = %self.inner.name, "recovery queue full: the oldest queued write was dropped; its keys may be served stale elsewhere until they expire");
                }
            }
            let start = !q.worker && tokio::runtime::Handle::try_current().is_ok();
            q.worker |= start;
            start
        };
        if start {
            tokio::spawn(recover(Arc::downgrade(&self.inner)));
        } else {
            self.inner.recovery_wake.notify_one();
        }
    }

    /// Applies one queued operation straight to L2 (past the breaker: this is the
    /// only caller while Redis comes back), re-applies an invalidation made at
    /// `at` to L1 (a read may have backfilled the old value from L2 meanwhile;
    /// entries made since, loaded from the source, stay) and publishes it.
    async fn replay(
        &self,
        op: &Pending<K, V>,
        at: cache_core::Timestamp,
    ) -> Result<(), CacheError> {
        let Some(l2) = &self.inner.l2 else {
            return Ok(());
        };
        op.apply_l2(&l2.store, self.inner.l1.clock().now()).await?;
        let l1 = &self.inner.l1;
        let older = |e: &Entry<V>| e.created_at() < at;
        match op {
            Pending::Put(..) => {}
            Pending::Remove(k) => {
                if l1.peek_sync(k).is_some_and(|e| older(&e)) {
                    l1.remove_sync(k);
                }
            }
            Pending::Tag(t) => {
                l1.remove_where(|_, e| older(e) && e.tags().iter().any(|x| x == t));
            }
            Pending::Prefix(p) => {
                let mut buf = String::new();
                l1.remove_where(|k, e| {
                    if !older(e) {
                        return false;
                    }
                    buf.clear();
                    k.encode_key(&mut buf);
                    buf.starts_with(p.as_str())
                });
            }
        }
        if let Some(bus) = &l2.bus {
            bus.publish(op.action()).await?;
        }
        Ok(())
    }

    fn keys_action(keys: &[K]) -> Action {
        Action::Keys(keys.iter().map(CacheKey::to_key_string).collect())
    }
}

/// How long the recovery worker waits between attempts while Redis is away.
const RECOVERY_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(25), Duration::from_millis(250));

/// Drains the recovery queue: waits until L2 answers a `PING`, then replays the
/// queue front to back; a replay that fails with a backend fault goes back to
/// the front and the worker waits again. Ends when the queue is empty or the
/// store is gone.
async fn recover<K, V, C>(weak: Weak<Inner<K, V, C>>)
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    let mut backoff = RECOVERY_BACKOFF.0;
    let mut drained = 0u64;
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let store = TieredStore { inner };
        let reachable = match &store.inner.l2 {
            Some(l2) => l2.store.ping().await.is_ok(),
            None => true,
        };
        if reachable {
            backoff = RECOVERY_BACKOFF.0;
            loop {
                let (op, at) = {
                    let mut q = store.inner.recovery.lock();
                    match q.pop() {
                        Some(popped) => {
                            q.busy = true;
                            popped
                        }
                        None => {
                            q.worker = false;
                            if drained > 0 {
                                log_info!(cache = %store.inner.name, replayed = drained, "recovery queue drained: writes made while Redis was unreachable are applied and published");
                            }
                            return;
                        }
                    }
                };
                let replayed = store.replay(&op, at).await;
                let mut q = store.inner.recovery.lock();
                q.busy = false;
                match replayed {
                    Ok(()) => {
                        drained += 1;
                        bump(&store.inner.counters.recovery_replayed);
                    }
                    Err(e) if e.is_backend_fault() => {
                        q.retry(op, at);
                        break;
                    }
                    // L2 refuses it for good (e.g. too large): retrying cannot help.
                    Err(_) => bump(&store.inner.counters.recovery_dropped),
                }
            }
        }
        let wake = store.inner.recovery_wake.clone();
        drop(store);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = wake.notified() => {}
        }
        backoff = (backoff * 2).min(RECOVERY_BACKOFF.1);
    }
}

impl<K, V> Pending<K, V>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn l2_op(&self) -> L2Op {
        match self {
            Pending::Put(..) => L2Op::Put,
            Pending::Remove(_) => L2Op::Remove,
            Pending::Tag(_) => L2Op::InvalidateTag,
            Pending::Prefix(_) => L2Op::InvalidatePrefix,
        }
    }

    /// The bus message that tells other instances about it.
    fn action(&self) -> Action {
        match self {
            Pending::Put(k, _) | Pending::Remove(k) => Action::Keys(vec![k.to_key_string()]),
            Pending::Tag(t) => Action::Tag(t.clone()),
            Pending::Prefix(p) => Action::Prefix(p.clone()),
        }
    }

    /// Applies it to L2; what L2 reports (entries removed; 0 for a put). A put
    /// whose entry has expired meanwhile writes nothing.
    async fn apply_l2<C: Codec + Clone>(
        &self,
        l2: &RedisStore<C>,
        now: cache_core::Timestamp,
    ) -> Result<u64, CacheError> {
        match self {
            Pending::Put(k, e) => {
                if e.is_expired(now) {
                    return Ok(0);
                }
                l2.put(k.clone(), e.clone()).await.map(|()| 0)
            }
            Pending::Remove(k) => Store::<K, V>::remove(l2, k).await.map(u64::from),
            Pending::Tag(t) => Store::<K, V>::invalidate_tag(l2, t).await,
            Pending::Prefix(p) => Store::<K, V>::invalidate_prefix(l2, p).await,
        }
    }
}

fn apply_event<K, V, C>(inner: &Inner<K, V, C>, event: BusEvent)
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone,
    V: Clone,
{
    match event {
        BusEvent::Message(m) => {
            bump(&inner.counters.bus_messages);
            match m.action {
                Action::Keys(keys) => {
                    for k in keys {
                        if let Some(key) = K::decode_key(&k) {
                            inner.l1.remove_sync(&key);
                        }
                    }
                }
                Action::Tag(tag) => {
                    inner.l1.invalidate_tag_sync(&tag);
                }
                Action::Prefix(prefix) => {
                    inner.l1.invalidate_prefix_sync(&prefix);
                }
                // Unknown future actions are treated like Clear: distrust.
                _ => inner.l1.clear(),
            }
        }
        BusEvent::Gap(reason) => {
            log_warn!(cache = %inner.name, reason = reason.as_str(), policy = ?inner.gap_policy, "invalidation bus gap: applying the gap policy to L1");
            let _ = reason;
            bump(&inner.counters.bus_gaps);
            match inner.gap_policy {
                GapPolicy::Clear => inner.l1.clear(),
                GapPolicy::Revalidate => {
                    inner.l1.cap_fresh(Duration::ZERO);
                }
                GapPolicy::Shorten(within) => {
                    inner.l1.cap_fresh(within);
                }
            }
        }
    }
}

impl<K, V, C> Store<K, V> for TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// [`TieredStore::read`]: the fresh entry from L1 or L2, else the
    /// longest-lived stale one (fail-closed: an L2 fault is returned).
    async fn get(&self, key: &K) -> Result<Option<Entry<V>>, CacheError> {
        match self.read(key, None, |_| true).await {
            TierRead::Fresh(e, _) => Ok(Some(e)),
            TierRead::Missing { fault: Some(e), .. } => Err(e),
            TierRead::Missing { stale, fault: None } => Ok(stale),
        }
    }

    /// Writes L2, tells other instances, then writes L1. An entry L1 refuses
    /// (over its key or weight limit) is still in L2 and other instances dropped
    /// their copies; this L1 drops its old copy too, and the refusal is returned.
    async fn put(&self, key: K, entry: Entry<V>) -> Result<(), CacheError> {
        self.write_l2(Pending::Put(key.clone(), entry.clone()))
            .await?;
        self.fill_l1(key, entry)
    }

    /// Removes `key` from L1 and L2 and tells other instances. `true` when either
    /// tier held it. When L2 cannot be reached (or earlier writes still wait), the
    /// L2 and bus part is queued and replayed when Redis answers again; the answer
    /// then reflects L1 only (see [`TieredStore::recovery_pending`]).
    async fn remove(&self, key: &K) -> Result<bool, CacheError> {
        let in_l1 = self.inner.l1.remove_sync(key);
        let in_l2 = self.write_l2(Pending::Remove(key.clone())).await?;
        Ok(in_l1 || in_l2 > 0)
    }

    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<Entry<V>>>, CacheError> {
        let now = self.inner.l1.clock().now();
        let mut out: Vec<Option<Entry<V>>> = keys
            .iter()
            .map(|k| self.inner.l1.get_sync(k).filter(|e| e.is_fresh(now)))
            .collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        let hits = (keys.len() - missing.len()) as u64;
        self.inner
            .counters
            .l1_hits
            .fetch_add(hits, Ordering::Relaxed);
        if missing.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<K> = missing.iter().map(|&i| keys[i].clone()).collect();
        let wanted_ref = &wanted;
        let found = self
            .guarded(L2Op::GetMany, |l2| async move {
                Store::<K, V>::get_many(l2, wanted_ref).await
            })
            .await?
            .unwrap_or_default();
        let mut backfill = Vec::with_capacity(found.len());
        for (slot, entry) in missing.iter().zip(found) {
            if let Some(e) = entry {
                backfill.push((keys[*slot].clone(), e.clone()));
                out[*slot] = Some(e);
            }
        }
        let l2_hits = backfill.len() as u64;
        self.inner.l1.put_each_sync(backfill);
        let counters = &self.inner.counters;
        counters.l2_hits.fetch_add(l2_hits, Ordering::Relaxed);
        counters
            .misses
            .fetch_add(missing.len() as u64 - l2_hits, Ordering::Relaxed);
        Ok(out)
    }

    async fn put_many(&self, entries: Vec<(K, Entry<V>)>) -> Result<(), CacheError> {
        let ops = entries
            .iter()
            .map(|(k, e)| Pending::Put(k.clone(), e.clone()))
            .collect();
        let keys: Vec<K> = entries.iter().map(|(k, _)| k.clone()).collect();
        let l2_entries = entries.clone();
        self.write_batch(
            L2Op::PutMany,
            ops,
            Self::keys_action(&keys),
            |l2| async move { l2.put_many(l2_entries).await.map(|()| 0) },
        )
        .await?;
        let mut refused = Ok(());
        for (k, e) in entries {
            if let Err(e) = self.fill_l1(k, e) {
                refused = Err(e);
            }
        }
        refused
    }

    async fn remove_many(&self, keys: &[K]) -> Result<u64, CacheError> {
        let mut removed = 0;
        for k in keys {
            removed += u64::from(self.inner.l1.remove_sync(k));
        }
        let ops = keys.iter().map(|k| Pending::Remove(k.clone())).collect();
        let in_l2 = self
            .write_batch(
                L2Op::RemoveMany,
                ops,
                Self::keys_action(keys),
                |l2| async move { Store::<K, V>::remove_many(l2, keys).await },
            )
            .await?;
        Ok(removed.max(in_l2))
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        cache_core::entry::validate_tag(tag)?;
        let in_l1 = self.inner.l1.invalidate_tag_sync(tag);
        let in_l2 = self.write_l2(Pending::Tag(tag.to_owned())).await?;
        Ok(in_l1.max(in_l2))
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, CacheError> {
        let in_l1 = self.inner.l1.invalidate_prefix_sync(prefix);
        let in_l2 = self.write_l2(Pending::Prefix(prefix.to_owned())).await?;
        Ok(in_l1.max(in_l2))
    }

    async fn health(&self) -> StoreHealth {
        let entries = self.inner.l1.len() as u64;
        let Some(l2) = &self.inner.l2 else {
            return StoreHealth::new("tiered", HealthStatus::Healthy)
                .with_entries(entries)
                .with_detail("L1 only");
        };
        let l2_health = Store::<K, V>::health(&l2.store).await;
        let breaker = l2.breaker.state();
        let incoherence = self.incoherence();
        let status = combined_health(
            l2_health.status,
            breaker,
            self.inner.mode,
            incoherence.is_none(),
        );
        let mut detail = format!(
            "breaker {}, L2: {}",
            breaker.as_str(),
            l2_health.detail.as_deref().unwrap_or("-")
        );
        if let Some(why) = incoherence {
            detail.push_str(", ");
            detail.push_str(&why);
        }
        let mut report = StoreHealth::new("tiered", status)
            .with_entries(entries)
            .with_detail(detail);
        if let Some(l) = l2_health.latency {
            report = report.with_latency(l);
        }
        report
    }
}
