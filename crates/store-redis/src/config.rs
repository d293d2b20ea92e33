//! The builder: every option validated at [`build`](RedisStoreBuilder::build).

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Clock, Codec, ConfigError, KeySpace, Namespace, Postcard, SystemClock};

use crate::conn::{Connections, Target};
use crate::security::{Security, connection_info};
use crate::store::{Inner, RedisStore, StoreCounters};

/// Default per-operation timeout.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(100);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default pause after a failed connect before the next attempt.
pub const DEFAULT_RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Default largest encoded entry (envelope included) the store writes: 4 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 4 << 20;
/// Largest value Redis itself accepts (512 MiB).
pub const REDIS_MAX_VALUE_SIZE: usize = 512 << 20;
/// Default `COUNT` hint of each `SCAN`/`SSCAN` step.
pub const DEFAULT_SCAN_COUNT: usize = 1000;
/// Default number of keys per `UNLINK` (and per batch chunk).
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// Largest connection pool.
pub const MAX_POOL_SIZE: usize = 64;

#[derive(Clone)]
enum Endpoint {
    None,
    Standalone(String),
    Cluster(Vec<String>),
}

/// URLs shown without their passwords.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::None => f.write_str("None"),
            Endpoint::Standalone(url) => f
                .debug_tuple("Standalone")
                .field(&crate::redact_url(url))
                .finish(),
            Endpoint::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(
                    &urls
                        .iter()
                        .map(|u| crate::redact_url(u))
                        .collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

/// Builder of a [`RedisStore`]; see [`RedisStore::builder`].
///
/// Nothing connects at build time: the first operation opens the connection (so a
/// service can start while Redis is down), and [`RedisStore::connect`] is there for
/// callers that want to fail fast instead.
#[must_use = "a builder does nothing until `build()` is called"]
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder<C = Postcard> {
    endpoint: Endpoint,
    name: String,
    prefix: String,
    namespace: String,
    op_timeout: Duration,
    connect_timeout: Duration,
    reconnect_backoff: Duration,
    pool_size: usize,
    max_key_len: usize,
    max_value_size: usize,
    max_read_size: Option<usize>,
    scan_count: usize,
    batch_size: usize,
    clock: Arc<dyn Clock>,
    security: Security,
    codec: C,
}

impl Default for RedisStoreBuilder<Postcard> {
    fn default() -> Self {
        RedisStoreBuilder {
            endpoint: Endpoint::None,
            name: "default".to_owned(),
            prefix: "cache".to_owned(),
            namespace: "default".to_owned(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            reconnect_backoff: DEFAULT_RECONNECT_BACKOFF,
            pool_size: 1,
            max_key_len: cache_core::key::DEFAULT_MAX_KEY_LEN,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            max_read_size: None,
            scan_count: DEFAULT_SCAN_COUNT,
            batch_size: DEFAULT_BATCH_SIZE,
            clock: Arc::new(SystemClock),
            security: Security::default(),
            codec: Postcard,
        }
    }
}

impl<C: Codec> RedisStoreBuilder<C> {
    /// A standalone server: `redis://[user[:password]@]host[:port][/db]`,
    /// `rediss://…` for TLS (feature `tls`), or `redis+unix:///path`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Endpoint::Standalone(url.into());
        self
    }

    /// A Redis Cluster, given one or more seed node URLs (the client discovers the
    /// rest and follows `MOVED`/`ASK` redirections).
    pub fn cluster<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoint = Endpoint::Cluster(urls.into_iter().map(Into::into).collect());
        self
    }

    /// The username to authenticate as (Redis 6 ACL users), instead of the
    /// URL's. Lets credentials come from a secret store rather than sit in a
    /// URL string in configuration.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.security.credentials.username = Some(username.into());
        self
    }

    /// The password, instead of the URL's (`requirepass` or an ACL user's).
    /// Never shown by `Debug`, errors, logs, health or metrics.
    ///
    /// ```
    /// use cache_store_redis::RedisStore;
    ///
    /// let builder = RedisStore::builder()
    ///     .url("redis://cache.internal:6379")
    ///     .username("app")
    ///     .password("from-the-vault");
    /// assert!(!format!("{builder:?}").contains("from-the-vault"));
    /// ```
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.security.credentials.password = Some(password.into());
        self
    }

    /// TLS settings for `rediss://` URLs: a private CA, client certificate,
    /// server name (feature `tls`; see [`TlsOptions`](crate::TlsOptions)).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, options: crate::TlsOptions) -> Self {
        self.security.tls = Some(options);
        self
    }

    /// Name of this store in health reports (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// First key segment, shared by every cache of an application (default `"cache"`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Second key segment: this cache's namespace (default `"default"`). Prefix and tag
    /// invalidation never reach outside it.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Longest a single operation may take, connecting included (default 100 ms).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Longest a connect may take (default 1 s). A connect outlives the operation
    /// that started it, so later operations find the connection ready.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// After a failed connect, operations fail at once for this long before the next
    /// attempt (default 100 ms).
    pub fn reconnect_backoff(mut self, backoff: Duration) -> Self {
        self.reconnect_backoff = backoff;
        self
    }

    /// Number of connections, used round-robin (default 1: one multiplexed connection
    /// already pipelines concurrent requests; more sockets help with large values).
    /// Standalone only.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Longest full key (`{prefix}:{namespace}:{key}`) in bytes (default 1024).
    pub fn max_key_len(mut self, max: usize) -> Self {
        self.max_key_len = max;
        self
    }

    /// Largest encoded entry, envelope included (default 4 MiB, at most 512 MiB).
    pub fn max_value_size(mut self, max: usize) -> Self {
        self.max_value_size = max;
        self
    }

    /// Largest value read back, envelope included (default: the
    /// [`max_value_size`](Self::max_value_size)). A longer value under a cache
    /// key — planted by someone else, or written under a larger limit — is a
    /// miss, counted in [`RedisStats::oversized_reads`](crate::RedisStats) and
    /// deleted; it is never read whole (`GETRANGE`), so it costs the reader at
    /// most one copy of this limit.
    pub fn max_read_size(mut self, max: usize) -> Self {
        self.max_read_size = Some(max);
        self
    }

    /// `COUNT` hint of each incremental `SCAN`/`SSCAN` step (default 1000).
    pub fn scan_count(mut self, count: usize) -> Self {
        self.scan_count = count;
        self
    }

    /// Keys per `UNLINK` and per chunk of a batch operation (default 500).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size;
        self
    }

    /// The clock entries are timed with (default [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The clock, shared.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The value codec (default [`Postcard`]).
    pub fn codec<C2: Codec>(self, codec: C2) -> RedisStoreBuilder<C2> {
        RedisStoreBuilder {
            endpoint: self.endpoint,
            name: self.name,
            prefix: self.prefix,
            namespace: self.namespace,
            op_timeout: self.op_timeout,
            connect_timeout: self.connect_timeout,
            reconnect_backoff: self.reconnect_backoff,
            pool_size: self.pool_size,
            max_key_len: self.max_key_len,
            max_value_size: self.max_value_size,
            max_read_size: self.max_read_size,
            scan_count: self.scan_count,
            batch_size: self.batch_size,
            clock: self.clock,
            security: self.security,
            codec,
        }
    }

    /// Validates the configuration and builds the store. Does not connect.
    pub fn build(self) -> Result<RedisStore<C>, ConfigError> {
        let prefix =
            Namespace::new(&self.prefix).map_err(|e| ConfigError::new("prefix", e.to_string()))?;
        let namespace = Namespace::new(&self.namespace)
            .map_err(|e| ConfigError::new("namespace", e.to_string()))?;
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        positive("op_timeout", self.op_timeout)?;
        positive("connect_timeout", self.connect_timeout)?;
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return Err(ConfigError::new(
                "pool_size",
                format!(
                    "must be between 1 and {MAX_POOL_SIZE}, got {}",
                    self.pool_size
                ),
            ));
        }
        if self.max_value_size == 0 || self.max_value_size > REDIS_MAX_VALUE_SIZE {
            return Err(ConfigError::new(
                "max_value_size",
                format!("must be between 1 and {REDIS_MAX_VALUE_SIZE} bytes"),
            ));
        }
        let max_read_size = self.max_read_size.unwrap_or(self.max_value_size);
        if max_read_size == 0 || max_read_size > REDIS_MAX_VALUE_SIZE {
            return Err(ConfigError::new(
                "max_read_size",
                format!("must be between 1 and {REDIS_MAX_VALUE_SIZE} bytes"),
            ));
        }
        if self.scan_count == 0 {
            return Err(ConfigError::new("scan_count", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(ConfigError::new("batch_size", "must be at least 1"));
        }
        let timeouts = (self.connect_timeout, self.op_timeout);
        let space = KeySpace::new(prefix, namespace).with_max_key_len(self.max_key_len);
        if self.max_key_len <= space.namespace_prefix().len() {
            return Err(ConfigError::new(
                "max_key_len",
                format!(
                    "must be longer than the key head {:?}",
                    space.namespace_prefix()
                ),
            ));
        }
        let target = target(self.endpoint, &self.security, self.pool_size, timeouts)?;
        let name: Arc<str> = self.name.into();
        let conns = Connections::new(
            name.clone(),
            target,
            self.pool_size,
            self.connect_timeout,
            self.reconnect_backoff,
        );
        Ok(RedisStore::from_inner(
            Arc::new(Inner {
                name: name.to_string().into(),
                space,
                conns,
                op_timeout: self.op_timeout,
                max_value_size: self.max_value_size,
                max_read_size,
                scan_count: self.scan_count,
                batch_size: self.batch_size,
                clock: self.clock,
                counters: StoreCounters::default(),
            }),
            self.codec,
        ))
    }
}

fn positive(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::new(field, "must be greater than zero"))
    } else {
        Ok(())
    }
}

/// Where connections go: the URL(s) parsed, credentials and TLS applied.
fn target(
    endpoint: Endpoint,
    security: &Security,
    pool_size: usize,
    (connect_timeout, op_timeout): (Duration, Duration),
) -> Result<Target, ConfigError> {
    let creds = &security.credentials;
    match endpoint {
        Endpoint::None => Err(ConfigError::new(
            "url",
            "no Redis given: call .url(\"redis://host:6379\") or .cluster([...])",
        )),
        Endpoint::Standalone(url) => {
            let info = connection_info("url", &url, creds)?;
            #[cfg(feature = "tls")]
            let (info, pinned) = match &security.tls {
                Some(tls) => crate::security::with_tls(info, tls, &tls.certificates()?)?,
                None => (info, None),
            };
            #[cfg(not(feature = "tls"))]
            let pinned: Option<crate::security::PinnedHost> = None;
            let client =
                redis::Client::open(info).map_err(|e| ConfigError::new("url", e.to_string()))?;
            let mut config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(op_timeout));
            if let Some(p) = &pinned {
                config = config.set_dns_resolver(p.clone());
            }
            Ok(Target::Standalone {
                client,
                config,
                pinned,
            })
        }
        Endpoint::Cluster(urls) => {
            if urls.is_empty() {
                return Err(ConfigError::new("cluster", "needs at least one seed URL"));
            }
            if pool_size != 1 {
                return Err(ConfigError::new(
                    "pool_size",
                    "a cluster connection manages its own per-node connections; leave pool_size at 1",
                ));
            }
            #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
            let mut seeds = Vec::with_capacity(urls.len());
            for url in &urls {
                seeds.push(connection_info("cluster", url, creds)?);
            }
            #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
            let mut builder = redis::cluster::ClusterClient::builder(seeds.clone())
                .connection_timeout(connect_timeout)
                .response_timeout(op_timeout)
                .retries(2);
            #[cfg(feature = "tls")]
            if let Some(tls) = &security.tls {
                if tls.server_name_ref().is_some() {
                    return Err(ConfigError::new(
                        "tls",
                        "server_name is for a standalone server: a cluster's nodes are verified \
                         against the addresses they announce",
                    ));
                }
                let certs = tls.certificates()?;
                seeds = seeds
                    .into_iter()
                    .map(|s| crate::security::with_tls(s, tls, &certs).map(|(s, _)| s))
                    .collect::<Result<_, _>>()?;
                builder = builder.certs(certs);
            }
            let client = builder
                .build()
                .map_err(|e| ConfigError::new("cluster", e.to_string()))?;
            Ok(Target::Cluster {
                client,
                seeds: seeds.into(),
            })
        }
    }
}
