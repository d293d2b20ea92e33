//! [`TieredStoreBuilder`]: validation and start-up (the bus listener).

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use cache_breaker::CircuitBreaker;
use cache_core::{CacheKey, Codec, ConfigError, DecodeKey, Postcard};
use cache_store_memory::MemoryStore;
use cache_store_redis::RedisStore;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{DEFAULT_GAP_POLICY, DEFAULT_RECOVERY_CAPACITY, FailMode, GapPolicy};
use crate::guard::op_durations;
use crate::meters::Meters;
use crate::recovery::RecoveryQueue;
use crate::tiered::{Inner, L2, LogLimits, TieredStore};

/// Builder of a [`TieredStore`]; see [`TieredStore::builder`].
#[must_use = "a builder does nothing until `build()` is called"]
pub struct TieredStoreBuilder<K, V, C = Postcard> {
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
    pub fn builder(l1: MemoryStore<K, V>) -> TieredStoreBuilder<K, V, Postcard> {
        TieredStoreBuilder {
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

impl<K, V, C> TieredStoreBuilder<K, V, C> {
    /// The L2 (without one, the store is the L1 alone — a complete configuration).
    pub fn l2<C2>(self, l2: RedisStore<C2>) -> TieredStoreBuilder<K, V, C2> {
        TieredStoreBuilder {
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
    pub fn codec_type<C2>(self) -> TieredStoreBuilder<K, V, C2> {
        TieredStoreBuilder {
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

    /// The breaker guarding L2 (default: [`default_breaker`](crate::default_breaker):
    /// open at a 50 % failure rate over 2 s, probe after 500 ms).
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

impl<K, V, C> TieredStoreBuilder<K, V, C>
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
            None => crate::config::default_breaker()
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
                meters: Arc::new(Meters::default()),
                logs: LogLimits::default(),
                listener: Mutex::new(None),
                bus_status: Mutex::new(None),
                gap_policy: self.gap_policy,
                recovery: Mutex::new(RecoveryQueue::new(self.recovery_capacity)),
                recovery_wake: Arc::new(tokio::sync::Notify::new()),
                epoch: std::sync::atomic::AtomicU64::new(0),
                background: Arc::default(),
                written: crate::written::Written::new(),
            }),
        };
        if listen {
            store.start_listener();
        } else {
            store.spawn_epoch_sync();
        }
        Ok(store)
    }
}
