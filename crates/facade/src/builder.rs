//! [`CacheBuilder`]: every option of a cache, validated at [`build`](CacheBuilder::build).

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use cache_bloom::AtomicBloomFilter;
use cache_core::{
    CacheError, CacheKey, Clock, Codec, ConfigError, DecodeKey, Namespace, Postcard, SystemClock,
};
use cache_singleflight::Group;
use cache_store_memory::{EvictionListener, MemoryStore, RemovalCause};
use cache_store_redis::RedisStore;
use cache_tiered::{FailMode, GapPolicy, TieredStore};

use cache_ttl_jitter::Jitter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::collections::HashMap;

use cache_ttl_jitter::RecomputeTime;
use parking_lot::Mutex;

use crate::cache::{Cache, CacheInner, Settings};
use crate::connect::{Connect, Endpoint};
use crate::refresh::policy::RefreshAhead;
use crate::report::{Counters, Meters};

/// Default TTL of a cached value (5 minutes).
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Loads at least this slow are logged as warnings by default (1 second).
pub const DEFAULT_SLOW_LOAD: Duration = Duration::from_secs(1);
/// Default TTL of a cached *absent* marker (10 seconds).
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Default L1 entry bound.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;

/// Builder of a [`Cache`]; see [`Cache::builder`]. Every option is checked by
/// [`build`](Self::build), which fails with a [`ConfigError`] naming the field.
///
/// ```
/// use std::time::Duration;
/// use resilient_cache::{Cache, FleetFlight, Jitter};
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let users: Cache<u64, String> = Cache::builder("users")
///     .max_entries(50_000)
///     .default_ttl(Duration::from_secs(300))
///     .jitter(Jitter::DEFAULT)
///     .negative_ttl(Duration::from_secs(10))
///     .stale_window(Duration::from_secs(600))
///     .load_hard_timeout(Duration::from_secs(2))
///     // .redis_url("redis://cache.internal:6379")
///     .fleet_flight(FleetFlight::DEFAULT)
///     .build()?;
/// assert!(Cache::builder("bad:name").build::<u64, String>().is_err());
/// # drop(users);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until `build()` is called"]
pub struct CacheBuilder<C = Postcard> {
    name: String,
    prefix: String,
    max_entries: usize,
    max_weight: Option<u64>,
    /// `Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>` for the `K`, `V` of `build`.
    weigher: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// `EvictionListener<K, V>` for the `K`, `V` of `build`.
    listener: Option<Arc<dyn std::any::Any + Send + Sync>>,
    time_to_idle: Option<Duration>,
    l1_max_ttl: Option<Duration>,
    redis: Connect,
    default_ttl: Duration,
    negative_ttl: Duration,
    jitter: Jitter,
    stale_window: Duration,
    op_timeout: Duration,
    connect_timeout: Duration,
    soft_timeout: Option<Duration>,
    hard_timeout: Option<Duration>,
    slow_load: Duration,
    breaker: Option<cache_breaker::CircuitBreakerBuilder>,
    fail_mode: FailMode,
    bus: bool,
    bus_keepalive: Duration,
    gap_policy: GapPolicy,
    recovery_capacity: usize,
    codec: C,
    clock: Arc<dyn Clock>,
    /// Whether `clock()` was called (then it drives the breaker too).
    clock_set: bool,
    bloom: Option<Arc<AtomicBloomFilter>>,
    refresh: Option<RefreshAhead>,
    fleet: crate::FleetFlight,
}

impl CacheBuilder<Postcard> {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        CacheBuilder {
            name: name.into(),
            prefix: "cache".to_owned(),
            max_entries: DEFAULT_MAX_ENTRIES,
            max_weight: None,
            weigher: None,
            listener: None,
            time_to_idle: None,
            l1_max_ttl: None,
            redis: Connect::default(),
            default_ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            jitter: Jitter::DEFAULT,
            stale_window: DEFAULT_TTL,
            op_timeout: cache_store_redis::DEFAULT_OP_TIMEOUT,
            connect_timeout: cache_store_redis::DEFAULT_CONNECT_TIMEOUT,
            soft_timeout: None,
            hard_timeout: None,
            slow_load: DEFAULT_SLOW_LOAD,
            breaker: None,
            fail_mode: FailMode::Open,
            bus: true,
            bus_keepalive: cache_store_redis::DEFAULT_KEEPALIVE,
            gap_policy: cache_tiered::DEFAULT_GAP_POLICY,
            recovery_capacity: cache_tiered::DEFAULT_RECOVERY_CAPACITY,
            codec: Postcard,
            clock: Arc::new(SystemClock),
            clock_set: false,
            bloom: None,
            refresh: None,
            fleet: crate::FleetFlight::DEFAULT,
        }
    }
}

impl<C: Codec + Clone> CacheBuilder<C> {
    /// First segment of every Redis key (default `"cache"`); the cache name is the
    /// second (the namespace).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// L1 entry bound (default 10,000).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// L1 weight bound, in the units of the [`weigher`](Self::weigher). Without
    /// one, a value weighs `size_of::<K>() + size_of::<V>()`: the shallow size,
    /// blind to what strings and vectors hold — set a weigher to bound bytes.
    pub fn max_weight(mut self, w: u64) -> Self {
        self.max_weight = Some(w);
        self
    }

    /// How much one L1 entry weighs (for [`max_weight`](Self::max_weight)),
    /// e.g. `|k: &String, v: &Vec<u8>| (k.len() + v.len()) as u64`. Its `K`, `V`
    /// must be those of [`build`](Self::build) (checked there).
    pub fn weigher<K, V>(mut self, f: impl Fn(&K, &V) -> u64 + Send + Sync + 'static) -> Self
    where
        K: 'static,
        V: 'static,
    {
        let f: Weigher<K, V> = Arc::new(f);
        self.weigher = Some(Arc::new(f));
        self
    }

    /// Calls `listener` with every entry that leaves this instance's L1, its
    /// value (`None` for a cached absence) and why ([`RemovalCause`]): evicted
    /// by a bound (`Size`), expired by TTL or [`time_to_idle`](Self::time_to_idle)
    /// (`Expired`), removed — by this instance, by another instance through the
    /// bus, by `clear` or a tag (`Explicit`) — or replaced by a newer value
    /// (`Replaced`). It runs outside L1's locks on the thread that made the
    /// change, so keep it short (hand heavy work to a channel). Its `K`, `V` must
    /// be those of [`build`](Self::build) (checked there).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use resilient_cache::{Cache, RemovalCause};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let heard = Arc::new(Mutex::new(Vec::new()));
    /// let log = heard.clone();
    /// let users: Cache<u64, String> = Cache::builder("users")
    ///     .eviction_listener(move |id: u64, _name: Option<String>, cause: RemovalCause| {
    ///         log.lock().unwrap().push((id, cause));
    ///     })
    ///     .build()?;
    /// users.set(1, "Ada".into()).await?;
    /// users.remove(&1).await?;
    /// assert_eq!(*heard.lock().unwrap(), [(1, RemovalCause::Explicit)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn eviction_listener<K, V>(
        mut self,
        listener: impl Fn(K, Option<V>, RemovalCause) + Send + Sync + 'static,
    ) -> Self
    where
        K: 'static,
        V: 'static,
    {
        let f: EvictionListener<K, V> = Arc::new(listener);
        self.listener = Some(Arc::new(f));
        self
    }

    /// Drops an L1 entry nobody read for `idle` (its TTL still applies too;
    /// whichever ends first). L2 copies keep their TTL: Redis is not written on
    /// reads. At least 1 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilient_cache::Cache;
    /// use resilient_cache::prelude::MockClock;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let clock = MockClock::default();
    /// let sessions: Cache<u64, String> = Cache::builder("sessions")
    ///     .default_ttl(Duration::from_secs(3600))
    ///     .time_to_idle(Duration::from_secs(300))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// sessions.set(1, "token".into()).await?;
    /// clock.advance(Duration::from_secs(301));
    /// assert_eq!(sessions.get(&1).await?, None, "idle for 5 minutes");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn time_to_idle(mut self, idle: Duration) -> Self {
        self.time_to_idle = Some(idle);
        self
    }

    /// Longest an entry stays in L1 whatever its TTL (L2 backfills are capped too).
    pub fn l1_max_ttl(mut self, ttl: Duration) -> Self {
        self.l1_max_ttl = Some(ttl);
        self
    }

    /// A standalone Redis as L2 (`redis://…`, `rediss://…` with the `tls`
    /// feature). Without this or [`redis_cluster`](Self::redis_cluster) the
    /// cache is L1 only — a complete configuration.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis.endpoint = Endpoint::Url(url.into());
        self
    }

    /// A Redis Cluster as L2, given seed node URLs.
    pub fn redis_cluster<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redis.endpoint = Endpoint::Cluster(urls.into_iter().map(Into::into).collect());
        self
    }

    /// The Redis username (an ACL user), instead of the URL's.
    pub fn redis_username(mut self, username: impl Into<String>) -> Self {
        self.redis.username = Some(username.into());
        self
    }

    /// The Redis password, instead of the URL's: credentials can come from a
    /// secret store instead of a URL string in configuration. It never appears
    /// in errors, logs, health or metrics.
    ///
    /// ```
    /// use resilient_cache::Cache;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users")
    ///     .redis_url("redis://cache.internal:6379")
    ///     .redis_username("app")
    ///     .redis_password(std::env::var("REDIS_PASSWORD").unwrap_or_default())
    ///     .build()?;
    /// # drop(users);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn redis_password(mut self, password: impl Into<String>) -> Self {
        self.redis.password = Some(password.into());
        self
    }

    /// TLS for `rediss://` URLs: a private CA, which roots to trust, a client
    /// certificate for mutual TLS, a server name (feature `tls`; see
    /// [`TlsOptions`](crate::TlsOptions)). Certificates are read and checked at
    /// [`build`](Self::build).
    #[cfg(feature = "tls")]
    pub fn redis_tls(mut self, options: crate::TlsOptions) -> Self {
        self.redis.tls = Some(options);
        self
    }

    /// TTL of values (default 5 minutes), jittered on every write.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// TTL of *absent* markers — a loader that returned `None` (default 10 s);
    /// zero disables negative caching.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// TTL jitter (default ±20%, [`Jitter::DEFAULT`]); [`Jitter::None`] disables it.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// How long past its TTL a value may still be served when the loader fails or
    /// is slow (fail-safe; default: one default TTL). Zero disables stale serving.
    pub fn stale_window(mut self, window: Duration) -> Self {
        self.stale_window = window;
        self
    }

    /// Per-operation timeout of every Redis call (default 100 ms).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Redis connect timeout (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Soft loader timeout: when a stale value exists, it is served after this
    /// long and the load finishes in the background (default: none).
    pub fn load_soft_timeout(mut self, timeout: Duration) -> Self {
        self.soft_timeout = Some(timeout);
        self
    }

    /// Hard loader timeout: the load is abandoned after this long (default: none).
    pub fn load_hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = Some(timeout);
        self
    }

    /// Loads that take at least this long are logged as a warning (feature
    /// `tracing`; default 1 s).
    pub fn slow_load_warning(mut self, threshold: Duration) -> Self {
        self.slow_load = threshold;
        self
    }

    /// The breaker policy guarding L2 (default: [`cache_tiered::default_breaker`],
    /// open at a 50 % failure rate over 2 s, probe after 500 ms). Its name and transition listener are set by the cache.
    pub fn breaker(mut self, breaker: cache_breaker::CircuitBreakerBuilder) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Fail-open (default: L2 faults degrade to L1 + loader) or fail-closed.
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Cross-instance L1 invalidation over a Redis Stream (default on with an L2).
    pub fn invalidation_bus(mut self, enabled: bool) -> Self {
        self.bus = enabled;
        self
    }

    /// How long the bus's idle blocking read waits before reading again (default
    /// 1 s, at least 10 ms): a dead bus connection is noticed within this plus
    /// the connect timeout.
    pub fn bus_keepalive(mut self, keepalive: Duration) -> Self {
        self.bus_keepalive = keepalive;
        self
    }

    /// What L1 does when the bus reports that invalidations were lost for good
    /// (Redis restarted or failed over, or its history was trimmed); default:
    /// entries stop being fresh within 30 s, spread out. See [`GapPolicy`] for
    /// what each choice trades.
    pub fn gap_policy(mut self, policy: GapPolicy) -> Self {
        self.gap_policy = policy;
        self
    }

    /// How many writes and invalidations (one per key, tag or prefix) are kept
    /// while Redis is unreachable, to be applied and published when it answers
    /// again (default 100,000; when full the oldest is dropped and counted in
    /// `cache_recovery_dropped_total`).
    pub fn recovery_capacity(mut self, capacity: usize) -> Self {
        self.recovery_capacity = capacity;
        self
    }

    /// The clock entries are timed with (default [`SystemClock`]). It drives the
    /// L2 circuit breaker's timing too (so one mock clock moves both), unless the
    /// breaker given to [`breaker`](Self::breaker) has a clock of its own.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock_set = true;
        self.clock = Arc::new(clock);
        self
    }

    /// A bloom filter of every key that can exist: lookups of keys it has never seen
    /// answer `None` without touching L1, L2 or the loader (penetration guard).
    /// Keys are hashed as the cache's key type; values set or loaded are added.
    pub fn bloom_guard(mut self, filter: AtomicBloomFilter) -> Self {
        self.bloom = Some(Arc::new(filter));
        self
    }

    /// Refresh hot values before they expire (default: off). A `get_or_load` that
    /// hits a value the policy deems due returns it at once and starts one
    /// background refresh for the key with that call's loader.
    pub fn refresh_ahead(mut self, policy: RefreshAhead) -> Self {
        self.refresh = Some(policy);
        self
    }

    /// Fleet-wide single flight: how instances sharing this L2 coordinate loads
    /// of one missed key (default [`FleetFlight::DEFAULT`](crate::FleetFlight::DEFAULT);
    /// no effect without an L2).
    pub fn fleet_flight(mut self, fleet: crate::FleetFlight) -> Self {
        self.fleet = fleet;
        self
    }

    /// The L2 value codec (default postcard).
    pub fn codec<C2: Codec + Clone>(self, codec: C2) -> CacheBuilder<C2> {
        CacheBuilder {
            name: self.name,
            prefix: self.prefix,
            max_entries: self.max_entries,
            max_weight: self.max_weight,
            weigher: self.weigher,
            listener: self.listener,
            time_to_idle: self.time_to_idle,
            l1_max_ttl: self.l1_max_ttl,
            redis: self.redis,
            default_ttl: self.default_ttl,
            negative_ttl: self.negative_ttl,
            jitter: self.jitter,
            stale_window: self.stale_window,
            op_timeout: self.op_timeout,
            connect_timeout: self.connect_timeout,
            soft_timeout: self.soft_timeout,
            hard_timeout: self.hard_timeout,
            slow_load: self.slow_load,
            breaker: self.breaker,
            fail_mode: self.fail_mode,
            bus: self.bus,
            bus_keepalive: self.bus_keepalive,
            gap_policy: self.gap_policy,
            recovery_capacity: self.recovery_capacity,
            codec,
            clock: self.clock,
            clock_set: self.clock_set,
            bloom: self.bloom,
            refresh: self.refresh,
            fleet: self.fleet,
        }
    }

    /// Validates everything and builds the cache. Does not connect to Redis (the
    /// first call does; a service can start while Redis is down). With an L2 and
    /// the bus enabled, must be called inside a tokio runtime.
    pub fn build<K, V>(mut self) -> Result<Cache<K, V, C>, ConfigError>
    where
        K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let namespace =
            Namespace::new(&self.name).map_err(|e| ConfigError::new("name", e.to_string()))?;
        if self.default_ttl.is_zero() {
            return Err(ConfigError::new("default_ttl", "must be greater than zero"));
        }
        if let Some(policy) = &self.refresh {
            policy.validate()?;
        }
        for (field, t) in [
            ("load_soft_timeout", self.soft_timeout),
            ("load_hard_timeout", self.hard_timeout),
        ] {
            if t.is_some_and(|t| t.is_zero()) {
                return Err(ConfigError::new(field, "must be greater than zero"));
            }
        }
        if let (Some(soft), Some(hard)) = (self.soft_timeout, self.hard_timeout)
            && soft >= hard
        {
            return Err(ConfigError::new(
                "load_soft_timeout",
                format!("must be shorter than the hard timeout ({hard:?})"),
            ));
        }
        let mut l1 = MemoryStore::<K, V>::builder()
            .name(self.name.clone())
            .max_entries(self.max_entries)
            .shared_clock(self.clock.clone());
        if let Some(w) = self.max_weight {
            l1 = l1.max_weight(w);
        }
        if let Some(any) = self.weigher.take() {
            let Ok(f) = any.downcast::<Weigher<K, V>>() else {
                return Err(ConfigError::new(
                    "weigher",
                    "its key and value types are not the cache's",
                ));
            };
            let f = Arc::clone(&*f);
            l1 = l1.weigher(move |k, v| f(k, v));
        }
        if let Some(any) = self.listener.take() {
            let Ok(f) = any.downcast::<EvictionListener<K, V>>() else {
                return Err(ConfigError::new(
                    "eviction_listener",
                    "its key and value types are not the cache's",
                ));
            };
            l1 = l1.shared_eviction_listener(Arc::clone(&*f));
        }
        if let Some(idle) = self.time_to_idle {
            l1 = l1.time_to_idle(idle);
        }
        if let Some(ttl) = self.l1_max_ttl {
            l1 = l1.max_ttl(ttl);
        }
        let l1 = l1.build().map_err(|e| match e {
            CacheError::Config(c) => c,
            other => ConfigError::new("l1", other.to_string()),
        })?;

        let name = namespace.as_str().to_owned();
        let mut tiered = TieredStore::builder(l1).name(name.clone());
        let tiered = match &self.redis.endpoint {
            Endpoint::None => tiered.codec_type::<C>().fail_mode(self.fail_mode).build()?,
            _ => {
                let redis = RedisStore::builder()
                    .prefix(self.prefix.clone())
                    .namespace(name.clone())
                    .name(name.clone())
                    .op_timeout(self.op_timeout)
                    .connect_timeout(self.connect_timeout)
                    .shared_clock(self.clock.clone());
                let redis = self.redis.apply(redis).codec(self.codec.clone()).build()?;
                let clock = self.clock_set.then(|| self.clock.clone());
                let breaker = crate::l2_breaker::breaker_for(self.breaker.take(), &name, clock)?;
                tiered = tiered.breaker(breaker);
                tiered
                    .l2(redis)
                    .fail_mode(self.fail_mode)
                    .invalidation_bus(self.bus)
                    .bus_keepalive(self.bus_keepalive)
                    .gap_policy(self.gap_policy)
                    .recovery_capacity(self.recovery_capacity)
                    .build()?
            }
        };
        let tiered_meters = tiered.meters().clone();
        let inner = Arc::new(CacheInner {
            meters: Meters::new(&name),
            name,
            tiered,
            flights: Arc::new(Group::new()),
            loads: Arc::new(Group::new()),
            recompute: RecomputeTime::default(),
            refreshing: Mutex::new(HashMap::new()),
            settings: Settings {
                default_ttl: self.default_ttl,
                negative_ttl: self.negative_ttl,
                jitter: self.jitter,
                stale_window: self.stale_window,
                soft_timeout: self.soft_timeout,
                hard_timeout: self.hard_timeout,
                slow_load: self.slow_load,
                refresh: self.refresh,
                fleet: self.fleet.validate()?,
            },
            clock: self.clock,
            bloom: self.bloom,
            counters: Counters::new(tiered_meters),
        });
        let cache = Cache::from_inner(inner);
        cache.start_upkeep();
        Ok(cache)
    }
}

impl Cache<(), ()> {
    /// A builder for a cache named `name` (also its Redis namespace).
    pub fn builder(name: impl Into<String>) -> CacheBuilder<Postcard> {
        CacheBuilder::new(name)
    }
}
