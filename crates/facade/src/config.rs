//! Caches configured from files and the environment: [`CacheConfig`] is every
//! data option of [`CacheBuilder`] as a serde structure with durations written
//! for people (`"250ms"`, `"30s"`, `"5m"`, `"1h30m"`), checked by the builder's
//! own `build()` (the same errors, naming the same fields).
//!
//! Code-only options (a weigher, an eviction listener, a clock, a bloom filter,
//! a codec) are set on the builder that [`CacheConfig::builder`] returns.

use std::time::Duration;

use cache_core::ConfigError;
use serde::{Deserialize, Deserializer};

use crate::builder::CacheBuilder;
use crate::{FailMode, FleetFlight, GapPolicy, Jitter, RefreshAhead, XFetch};

/// A duration as people write it: a number and a unit (`ms`, `s`, `m`, `h`,
/// `d`), several in a row (`"1h30m"`); a bare integer is seconds.
///
/// ```
/// use std::time::Duration;
/// use resilient_cache::config::parse_duration;
///
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("5 parsecs").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("an empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{text}`: expected a number before each unit"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let part = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = next;
    }
    Ok(total)
}

/// A [`Duration`] read with [`parse_duration`] (a string, or an integer of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(HumanDuration(Duration::from_secs(s))),
            Raw::Text(t) => parse_duration(&t)
                .map(HumanDuration)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Where L2 is and how to reach it. Its `Debug` shows no password.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// A standalone server (`redis://…`, `rediss://…`).
    pub url: Option<String>,
    /// Or a cluster's seed URLs.
    pub cluster: Vec<String>,
    /// The ACL user, instead of the URL's.
    pub username: Option<String>,
    /// The password, instead of the URL's.
    pub password: Option<String>,
    /// TLS settings (feature `tls`).
    pub tls: Option<TlsConfig>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |u: &String| cache_store_redis::redact_url(u);
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_ref().map(redact))
            .field(
                "cluster",
                &self.cluster.iter().map(redact).collect::<Vec<_>>(),
            )
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// TLS settings for `rediss://` URLs (applied with feature `tls`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of CA certificates to trust.
    pub ca_file: Option<String>,
    /// `webpki` (default), `platform` or `given_only`.
    pub roots: Option<String>,
    /// The client certificate (PEM file), for mutual TLS.
    pub client_cert_file: Option<String>,
    /// Its private key (PEM file).
    pub client_key_file: Option<String>,
    /// The name to verify instead of the URL's host.
    pub server_name: Option<String>,
}

/// The L2 circuit breaker: a failure rate over a time window (the default
/// policy) or a count of consecutive failures.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Trip after this many failures in a row (instead of a rate).
    pub consecutive_failures: Option<u32>,
    /// Trip when at least this share of the calls in `window` failed…
    pub failure_rate: Option<f64>,
    /// …over this window…
    pub window: Option<HumanDuration>,
    /// …once at least this many calls were made.
    pub minimum_calls: Option<u32>,
    /// How long it stays open before letting probes through.
    pub wait_in_open: Option<HumanDuration>,
    /// Probes let through when half-open.
    pub permitted_in_half_open: Option<u32>,
}

/// Refresh-ahead: `{ threshold = 0.2 }` or `{ xfetch = 1.0 }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RefreshConfig {
    /// Refresh in the last `threshold` share of an entry's life.
    Threshold(f64),
    /// XFetch with this β.
    Xfetch(f64),
}

/// Fleet-wide single flight: `{ enabled = false }`, or lease settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// Off with `false` (default on, with an L2).
    pub enabled: Option<bool>,
    /// Lease lifetime.
    pub lease_ttl: Option<HumanDuration>,
    /// Longest wait for another instance's load.
    pub wait: Option<HumanDuration>,
}

/// Every data option of a cache. Anything left out keeps the builder's default.
///
/// ```
/// use resilient_cache::config::CacheConfig;
/// use std::collections::BTreeMap;
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let file = r#"
///     [users]
///     max_entries = 50_000
///     default_ttl = "5m"
///     stale_window = "1h"
///     jitter = "10%"
///     load_hard_timeout = "2s"
///     fail_mode = "open"
///
///     [sessions]
///     default_ttl = "30m"
///     time_to_idle = "5m"
///     gap_policy = "revalidate"
///     refresh_ahead = { threshold = 0.2 }
/// "#;
/// let caches: BTreeMap<String, CacheConfig> = toml::from_str(file)?;
/// let users: resilient_cache::Cache<u64, String> = caches["users"].builder("users")?.build()?;
/// let sessions: resilient_cache::Cache<String, Vec<u8>> =
///     caches["sessions"].builder("sessions")?.build()?;
/// # drop((users, sessions));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Key prefix in Redis (default `cache`).
    pub prefix: Option<String>,
    /// L1 entry bound.
    pub max_entries: Option<usize>,
    /// L1 weight bound.
    pub max_weight: Option<u64>,
    /// Longest an entry stays in L1.
    pub l1_max_ttl: Option<HumanDuration>,
    /// Drop L1 entries nobody read for this long.
    pub time_to_idle: Option<HumanDuration>,
    /// TTL of values.
    pub default_ttl: Option<HumanDuration>,
    /// TTL of absent results (`"0s"`: do not cache absence).
    pub negative_ttl: Option<HumanDuration>,
    /// How long past its TTL a value may stand in for a failed load.
    pub stale_window: Option<HumanDuration>,
    /// `"none"`, `"20%"` (±), `"below 10%"`, or a duration (`"5s"`, ±).
    pub jitter: Option<String>,
    /// Bound of every Redis operation.
    pub op_timeout: Option<HumanDuration>,
    /// Bound of a Redis connect.
    pub connect_timeout: Option<HumanDuration>,
    /// Serve stale after this long, and let the load finish in the background.
    pub load_soft_timeout: Option<HumanDuration>,
    /// Give up on a load after this long.
    pub load_hard_timeout: Option<HumanDuration>,
    /// Log loads slower than this.
    pub slow_load_warning: Option<HumanDuration>,
    /// `"open"` or `"closed"`.
    pub fail_mode: Option<String>,
    /// The invalidation bus (default on with an L2).
    pub invalidation_bus: Option<bool>,
    /// The bus's keep-alive read.
    pub bus_keepalive: Option<HumanDuration>,
    /// `"clear"`, `"revalidate"`, or a duration to shorten L1 lifetimes to.
    pub gap_policy: Option<String>,
    /// Bound of the recovery queue.
    pub recovery_capacity: Option<usize>,
    /// Refresh-ahead policy.
    pub refresh_ahead: Option<RefreshConfig>,
    /// Fleet-wide single flight.
    pub fleet_flight: Option<FleetConfig>,
    /// The L2 breaker.
    pub breaker: Option<BreakerConfig>,
    /// The L2.
    pub redis: Option<RedisConfig>,
}

fn bad(field: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::new(field, why.into())
}

fn percent(field: &'static str, text: &str) -> Result<f64, ConfigError> {
    let number = text.trim().strip_suffix('%').ok_or_else(|| {
        bad(
            field,
            format!("`{text}`: expected a percentage such as `20%`"),
        )
    })?;
    number
        .trim()
        .parse::<f64>()
        .map(|p| p / 100.0)
        .map_err(|_| bad(field, format!("`{text}` is not a percentage")))
}

fn jitter(text: &str) -> Result<Jitter, ConfigError> {
    let text = text.trim();
    if text == "none" {
        return Ok(Jitter::None);
    }
    if let Some(below) = text.strip_prefix("below") {
        return Jitter::below(percent("jitter", below)?).map_err(|e| bad("jitter", e.to_string()));
    }
    if text.ends_with('%') {
        return Jitter::symmetric(percent("jitter", text)?)
            .map_err(|e| bad("jitter", e.to_string()));
    }
    parse_duration(text)
        .map(Jitter::absolute)
        .map_err(|e| bad("jitter", e))
}

impl CacheConfig {
    /// A builder for the cache `name` with every option of this configuration
    /// applied; [`build`](CacheBuilder::build) checks them as it checks code.
    pub fn builder(&self, name: &str) -> Result<CacheBuilder, ConfigError> {
        let mut b = crate::Cache::builder(name);
        let d = |h: &Option<HumanDuration>| h.map(|h| h.0);
        if let Some(p) = &self.prefix {
            b = b.prefix(p.clone());
        }
        if let Some(n) = self.max_entries {
            b = b.max_entries(n);
        }
        if let Some(w) = self.max_weight {
            b = b.max_weight(w);
        }
        if let Some(t) = d(&self.l1_max_ttl) {
            b = b.l1_max_ttl(t);
        }
        if let Some(t) = d(&self.time_to_idle) {
            b = b.time_to_idle(t);
        }
        if let Some(t) = d(&self.default_ttl) {
            b = b.default_ttl(t);
        }
        if let Some(t) = d(&self.negative_ttl) {
            b = b.negative_ttl(t);
        }
        if let Some(t) = d(&self.stale_window) {
            b = b.stale_window(t);
        }
        if let Some(j) = &self.jitter {
            b = b.jitter(jitter(j)?);
        }
        if let Some(t) = d(&self.op_timeout) {
            b = b.op_timeout(t);
        }
        if let Some(t) = d(&self.connect_timeout) {
            b = b.connect_timeout(t);
        }
        if let Some(t) = d(&self.load_soft_timeout) {
            b = b.load_soft_timeout(t);
        }
        if let Some(t) = d(&self.load_hard_timeout) {
            b = b.load_hard_timeout(t);
        }
        if let Some(t) = d(&self.slow_load_warning) {
            b = b.slow_load_warning(t);
        }
        if let Some(mode) = &self.fail_mode {
            b = b.fail_mode(match mode.as_str() {
                "open" => FailMode::Open,
                "closed" => FailMode::Closed,
                other => {
                    return Err(bad(
                        "fail_mode",
                        format!("`{other}`: use `open` or `closed`"),
                    ));
                }
            });
        }
        if let Some(on) = self.invalidation_bus {
            b = b.invalidation_bus(on);
        }
        if let Some(t) = d(&self.bus_keepalive) {
            b = b.bus_keepalive(t);
        }
        if let Some(g) = &self.gap_policy {
            b = b.gap_policy(match g.as_str() {
                "clear" => GapPolicy::Clear,
                "revalidate" => GapPolicy::Revalidate,
                other => GapPolicy::Shorten(parse_duration(other).map_err(|e| {
                    bad("gap_policy", format!("{e}; or use `clear` or `revalidate`"))
                })?),
            });
        }
        if let Some(n) = self.recovery_capacity {
            b = b.recovery_capacity(n);
        }
        if let Some(r) = self.refresh_ahead {
            b = b.refresh_ahead(match r {
                RefreshConfig::Threshold(t) => RefreshAhead::Threshold(t),
                RefreshConfig::Xfetch(beta) => RefreshAhead::XFetch(
                    XFetch::new(beta).map_err(|e| bad("refresh_ahead", e.to_string()))?,
                ),
            });
        }
        if let Some(f) = &self.fleet_flight {
            b = b.fleet_flight(match f.enabled {
                Some(false) => FleetFlight::Off,
                _ => match FleetFlight::DEFAULT {
                    FleetFlight::Lease { ttl, wait } => FleetFlight::Lease {
                        ttl: d(&f.lease_ttl).unwrap_or(ttl),
                        wait: d(&f.wait).unwrap_or(wait),
                    },
                    off => off,
                },
            });
        }
        if let Some(c) = &self.breaker {
            b = b.breaker(c.to_builder());
        }
        if let Some(r) = &self.redis {
            b = r.apply(b)?;
        }
        Ok(b)
    }
}

impl BreakerConfig {
    fn to_builder(&self) -> crate::BreakerBuilder {
        let defaults = cache_tiered::default_breaker();
        let mut b = match self.consecutive_failures {
            Some(n) => defaults.consecutive_failures(n),
            None => defaults.time_window(
                self.window.map_or(Duration::from_secs(2), |w| w.0),
                self.failure_rate.unwrap_or(0.5),
                self.minimum_calls.unwrap_or(10),
            ),
        };
        if let Some(w) = self.wait_in_open {
            b = b.wait_in_open(w.0);
        }
        if let Some(n) = self.permitted_in_half_open {
            b = b.permitted_in_half_open(n);
        }
        b
    }
}

impl RedisConfig {
    fn apply(&self, mut b: CacheBuilder) -> Result<CacheBuilder, ConfigError> {
        match (&self.url, self.cluster.is_empty()) {
            (Some(_), false) => {
                return Err(bad("redis", "give either `url` or `cluster`, not both"));
            }
            (Some(url), true) => b = b.redis_url(url.clone()),
            (None, false) => b = b.redis_cluster(self.cluster.clone()),
            (None, true) => {}
        }
        if let Some(u) = &self.username {
            b = b.redis_username(u.clone());
        }
        if let Some(p) = &self.password {
            b = b.redis_password(p.clone());
        }
        if let Some(tls) = &self.tls {
            b = tls.apply(b)?;
        }
        Ok(b)
    }
}

impl TlsConfig {
    #[cfg(feature = "tls")]
    fn apply(&self, b: CacheBuilder) -> Result<CacheBuilder, ConfigError> {
        use crate::{TlsOptions, TlsRoots};
        let mut t = TlsOptions::new();
        if let Some(ca) = &self.ca_file {
            t = t.ca_pem_file(ca);
        }
        if let Some(roots) = &self.roots {
            t = t.roots(match roots.as_str() {
                "webpki" => TlsRoots::WebPki,
                "platform" => TlsRoots::Platform,
                "given_only" => TlsRoots::GivenOnly,
                other => {
                    return Err(bad(
                        "tls",
                        format!("roots `{other}`: use `webpki`, `platform` or `given_only`"),
                    ));
                }
            });
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => t = t.client_cert_pem_files(cert, key),
            (None, None) => {}
            _ => {
                return Err(bad(
                    "tls",
                    "a client certificate needs both its file and its key",
                ));
            }
        }
        if let Some(name) = &self.server_name {
            t = t.server_name(name.clone());
        }
        Ok(b.redis_tls(t))
    }

    #[cfg(not(feature = "tls"))]
    fn apply(&self, _: CacheBuilder) -> Result<CacheBuilder, ConfigError> {
        Err(bad(
            "tls",
            "TLS settings need the `tls` feature of resilient-cache",
        ))
    }
}

impl CacheConfig {
    /// A configuration from the environment: each option read from
    /// `{prefix}{OPTION}` (`USERS_CACHE_DEFAULT_TTL=30s`,
    /// `USERS_CACHE_REDIS_URL=redis://…`, `USERS_CACHE_REDIS_CLUSTER=url1,url2`);
    /// see [`with_vars`](Self::with_vars) for the names.
    ///
    /// ```
    /// use resilient_cache::config::CacheConfig;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// // Nothing set: the builder's defaults (an L1-only cache here).
    /// let config = CacheConfig::from_env("DOC_EXAMPLE_CACHE_")?;
    /// let cache: resilient_cache::Cache<u64, String> = config.builder("users")?.build()?;
    /// # drop(cache);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_env(prefix: &str) -> Result<Self, ConfigError> {
        Self::default().with_vars(prefix, |name| std::env::var(name).ok())
    }

    /// This configuration with variables found by `lookup` applied on top
    /// (environment variables, or any other source of strings). The names,
    /// after `prefix`: `PREFIX`, `MAX_ENTRIES`, `MAX_WEIGHT`, `L1_MAX_TTL`,
    /// `TIME_TO_IDLE`, `DEFAULT_TTL`, `NEGATIVE_TTL`, `STALE_WINDOW`, `JITTER`,
    /// `OP_TIMEOUT`, `CONNECT_TIMEOUT`, `LOAD_SOFT_TIMEOUT`, `LOAD_HARD_TIMEOUT`,
    /// `SLOW_LOAD_WARNING`, `FAIL_MODE`, `INVALIDATION_BUS`, `BUS_KEEPALIVE`,
    /// `GAP_POLICY`, `RECOVERY_CAPACITY`, `FLEET_FLIGHT` (`on`/`off`),
    /// `REDIS_URL`, `REDIS_CLUSTER` (comma-separated), `REDIS_USERNAME`,
    /// `REDIS_PASSWORD`, `REDIS_TLS_CA_FILE`, `REDIS_TLS_ROOTS`,
    /// `REDIS_TLS_CLIENT_CERT_FILE`, `REDIS_TLS_CLIENT_KEY_FILE`,
    /// `REDIS_TLS_SERVER_NAME`. A value that does not parse fails, naming the
    /// variable (never its value, which may be a secret).
    pub fn with_vars(
        mut self,
        prefix: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(&format!("{prefix}{name}"));
        let field = |name: &'static str| -> ConfigError {
            bad("env", format!("{prefix}{name} does not parse"))
        };
        let duration = |name: &'static str| -> Result<Option<HumanDuration>, ConfigError> {
            get(name)
                .map(|v| {
                    parse_duration(&v)
                        .map(HumanDuration)
                        .map_err(|_| field(name))
                })
                .transpose()
        };
        let number = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            get(name)
                .map(|v| v.trim().replace('_', "").parse().map_err(|_| field(name)))
                .transpose()
        };
        let flag = |name: &'static str| -> Result<Option<bool>, ConfigError> {
            get(name)
                .map(|v| match v.trim() {
                    "true" | "on" | "1" | "yes" => Ok(true),
                    "false" | "off" | "0" | "no" => Ok(false),
                    _ => Err(field(name)),
                })
                .transpose()
        };
        let size = |n: Option<u64>| n.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        macro_rules! set {
            ($slot:expr, $value:expr) => {
                if let Some(v) = $value {
                    $slot = Some(v);
                }
            };
        }
        set!(self.prefix, get("PREFIX"));
        set!(self.max_entries, size(number("MAX_ENTRIES")?));
        set!(self.max_weight, number("MAX_WEIGHT")?);
        set!(self.l1_max_ttl, duration("L1_MAX_TTL")?);
        set!(self.time_to_idle, duration("TIME_TO_IDLE")?);
        set!(self.default_ttl, duration("DEFAULT_TTL")?);
        set!(self.negative_ttl, duration("NEGATIVE_TTL")?);
        set!(self.stale_window, duration("STALE_WINDOW")?);
        set!(self.jitter, get("JITTER"));
        set!(self.op_timeout, duration("OP_TIMEOUT")?);
        set!(self.connect_timeout, duration("CONNECT_TIMEOUT")?);
        set!(self.load_soft_timeout, duration("LOAD_SOFT_TIMEOUT")?);
        set!(self.load_hard_timeout, duration("LOAD_HARD_TIMEOUT")?);
        set!(self.slow_load_warning, duration("SLOW_LOAD_WARNING")?);
        set!(self.fail_mode, get("FAIL_MODE"));
        set!(self.invalidation_bus, flag("INVALIDATION_BUS")?);
        set!(self.bus_keepalive, duration("BUS_KEEPALIVE")?);
        set!(self.gap_policy, get("GAP_POLICY"));
        set!(self.recovery_capacity, size(number("RECOVERY_CAPACITY")?));
        if let Some(on) = flag("FLEET_FLIGHT")? {
            self.fleet_flight
                .get_or_insert_with(FleetConfig::default)
                .enabled = Some(on);
        }
        let redis_vars = [
            "REDIS_URL",
            "REDIS_CLUSTER",
            "REDIS_USERNAME",
            "REDIS_PASSWORD",
        ];
        let tls_vars = [
            "REDIS_TLS_CA_FILE",
            "REDIS_TLS_ROOTS",
            "REDIS_TLS_CLIENT_CERT_FILE",
            "REDIS_TLS_CLIENT_KEY_FILE",
            "REDIS_TLS_SERVER_NAME",
        ];
        if redis_vars.iter().chain(&tls_vars).any(|v| get(v).is_some()) {
            let redis = self.redis.get_or_insert_with(RedisConfig::default);
            set!(redis.url, get("REDIS_URL"));
            if let Some(list) = get("REDIS_CLUSTER") {
                redis.cluster = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            set!(redis.username, get("REDIS_USERNAME"));
            set!(redis.password, get("REDIS_PASSWORD"));
            if tls_vars.iter().any(|v| get(v).is_some()) {
                let tls = redis.tls.get_or_insert_with(TlsConfig::default);
                set!(tls.ca_file, get("REDIS_TLS_CA_FILE"));
                set!(tls.roots, get("REDIS_TLS_ROOTS"));
                set!(tls.client_cert_file, get("REDIS_TLS_CLIENT_CERT_FILE"));
                set!(tls.client_key_file, get("REDIS_TLS_CLIENT_KEY_FILE"));
                set!(tls.server_name, get("REDIS_TLS_SERVER_NAME"));
            }
        }
        Ok(self)
    }
}
