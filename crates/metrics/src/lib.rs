//! The resilient cache's metrics: one catalogue of names, kinds, units, labels and
//! help texts, a Prometheus exporter installer (feature `prometheus`) and an HTTP
//! endpoint serving `/metrics` and `/health/cache` (feature `http`).
//!
//! Every crate of the workspace emits through the [`metrics`] facade with the names
//! in [`names`]; nothing is recorded until the application installs a recorder.
//! Labels are low-cardinality only (`cache`, `tier`, `result`, `outcome`, `op`,
//! `kind`, `reason`, `from`, `to`): never a key.
//!
//! # Example
//!
//! ```
//! use cache_metrics::{CATALOG, MetricKind, names};
//!
//! // Every metric the cache emits is in the catalogue, with its help text.
//! let requests = CATALOG.iter().find(|m| m.name == names::REQUESTS).unwrap();
//! assert_eq!(requests.kind, MetricKind::Counter);
//! assert_eq!(requests.labels, &["cache", "tier", "result"]);
//!
//! // With your own recorder installed, describe them once so that exporters
//! // print HELP lines and units.
//! cache_metrics::describe();
//! ```
//!
//! With the `prometheus` and `http` features, a service installs the exporter
//! (`PrometheusExporter::install()`, before building caches; or hands over a
//! recorder it installed itself with `PrometheusExporter::from_handle`), registers its caches
//! with an `http::Endpoint` and merges `endpoint.router()` into its axum app or runs
//! `endpoint.serve(addr)`. The `http` module has a runnable example; the facade
//! (`resilient-cache` with feature `http`) makes every `Cache` a health source.
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `prometheus` | no | `PrometheusExporter`: install a Prometheus recorder or wrap a handle the service installed |
//! | `http` | no | `http::Endpoint`: `/metrics` and `/health/cache` over HTTP (axum); implies `prometheus` |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "prometheus")]
mod prometheus;

/// The Prometheus exporter crate, for a service that builds its own recorder
/// and hands it over with [`PrometheusExporter::from_handle`].
#[cfg(feature = "prometheus")]
pub use metrics_exporter_prometheus;
#[cfg(feature = "prometheus")]
pub use prometheus::{ExporterError, LATENCY_BUCKETS, PrometheusExporter};

/// The metric names. Each one is described in [`CATALOG`].
pub mod names {
    /// Counter `{cache, tier, result}`: lookups by where they were answered
    /// (`l1`/`l2` × `hit`, `source` × `miss`).
    pub const REQUESTS: &str = "cache_requests_total";
    /// Counter `{cache, outcome}`: loader runs (`ok`, `absent`, `error`, `timeout`, `panic`).
    pub const LOADS: &str = "cache_loads_total";
    /// Histogram `{cache}`: loader run time in seconds.
    pub const LOAD_DURATION: &str = "cache_load_duration_seconds";
    /// Counter `{cache}`: callers that joined another caller's load.
    pub const COALESCED: &str = "cache_coalesced_total";
    /// Counter `{cache, outcome}`: fleet-wide single flight, per missed key:
    /// `acquired` (this instance took the load lease and loaded), `waited` (another
    /// instance loaded; this one got the value from L2), `timed_out` (waited to the
    /// limit, then loaded itself), `local` (no lease possible: Redis unreachable,
    /// breaker open; the load stayed local).
    pub const FLEET_LEASES: &str = "cache_fleet_leases_total";
    /// Histogram `{cache}`: seconds an instance waited for another instance's load.
    pub const FLEET_WAIT: &str = "cache_fleet_wait_seconds";
    /// Counter `{cache}`: stale values served because the loader failed or was slow.
    pub const STALE_SERVED: &str = "cache_stale_served_total";
    /// Counter `{cache}`: lookups refused by the bloom guard.
    pub const BLOOM_REJECTIONS: &str = "cache_bloom_rejections_total";
    /// Counter `{cache, kind}`: background refreshes (`threshold`, `xfetch`, `error`).
    pub const REFRESHES: &str = "cache_refreshes_total";
    /// Histogram `{cache, op}`: L2 operation time in seconds.
    pub const L2_OP_DURATION: &str = "cache_l2_op_duration_seconds";
    /// Counter `{cache, kind}`: L2 faults (`timeout`, `unavailable`, `rejected` by an
    /// open breaker) and refusals Redis answered with (`refused`: OOM, WRONGTYPE, …;
    /// `denied`: credentials or ACL), which do not count against the breaker.
    pub const L2_ERRORS: &str = "cache_l2_errors_total";
    /// Counter `{cache}`: L2 faults absorbed by fail-open.
    pub const FAIL_OPEN: &str = "cache_fail_open_total";
    /// Gauge `{cache}`: breaker state (0 closed, 1 half-open, 2 open).
    pub const BREAKER_STATE: &str = "cache_breaker_state";
    /// Counter `{cache, from, to}`: breaker transitions.
    pub const BREAKER_TRANSITIONS: &str = "cache_breaker_transitions_total";
    /// Counter `{cache, reason}`: L1 entries dropped (`capacity`, `weight`,
    /// `expired`, `removed`).
    pub const EVICTIONS: &str = "cache_evictions_total";
    /// Gauge `{cache}`: entries in L1.
    pub const L1_ENTRIES: &str = "cache_l1_entries";
    /// Gauge `{cache}`: the L1 entry bound.
    pub const L1_MAX_ENTRIES: &str = "cache_l1_max_entries";
    /// Gauge `{cache}`: total weight held by L1 (bytes with the default weigher).
    pub const L1_WEIGHT: &str = "cache_l1_weight";
    /// Counter `{cache}`: invalidations received from other instances.
    pub const BUS_MESSAGES: &str = "cache_bus_messages_total";
    /// Counter `{cache}`: invalidation-bus gaps (history lost for good; each one
    /// handled by the gap policy).
    pub const BUS_GAPS: &str = "cache_bus_gaps_total";
    /// Counter `{cache}`: invalidations published while the bus was disconnected
    /// and read after it reconnected (replayed, not lost).
    pub const BUS_REPLAYED: &str = "cache_bus_replayed_total";
    /// Counter `{cache}`: times the bus connection was re-established.
    pub const BUS_RECONNECTS: &str = "cache_bus_reconnects_total";
    /// Gauge `{cache}`: writes and invalidations waiting for L2 in the recovery queue.
    pub const RECOVERY_PENDING: &str = "cache_recovery_queue_depth";
    /// Counter `{cache}`: queued operations applied to L2 and published after an outage.
    pub const RECOVERY_REPLAYED: &str = "cache_recovery_replayed_total";
    /// Counter `{cache}`: queued operations dropped (queue full, or refused by L2).
    pub const RECOVERY_DROPPED: &str = "cache_recovery_dropped_total";
    /// Counter `{cache}`: invalidations that could not be published.
    pub const BUS_PUBLISH_ERRORS: &str = "cache_bus_publish_errors_total";
    /// Gauge `{cache}`: 1 while the invalidation bus is subscribed, else 0.
    pub const BUS_CONNECTED: &str = "cache_bus_connected";
    /// Counter `{cache, reason}`: values read from Redis that were not used and
    /// were deleted: `corrupt` (undecodable, or not a string) or `oversized`
    /// (over the read limit; never read whole).
    pub const L2_VALUES_REJECTED: &str = "cache_l2_values_rejected_total";
    /// Counter `{cache}`: bus messages dropped unread (over the size limit, or
    /// not a message of this bus).
    pub const BUS_DROPPED: &str = "cache_bus_dropped_total";
    /// Counter `{cache}`: values read from L2 or loaded that were not kept
    /// because their key was invalidated while they were read (a load's L2
    /// write taken back included).
    pub const FILLS_FENCED: &str = "cache_fills_fenced_total";
}

/// What kind of instrument a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic count; the name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution; the name ends in its unit (`_seconds`).
    Histogram,
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The metric name, as emitted.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The unit, if it has one.
    pub unit: Option<metrics::Unit>,
    /// The label keys it carries (all low-cardinality).
    pub labels: &'static [&'static str],
    /// One-line help text (Prometheus `# HELP`).
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    let unit = match kind {
        MetricKind::Histogram => Some(metrics::Unit::Seconds),
        _ => None,
    };
    MetricDef {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric the workspace emits.
pub const CATALOG: &[MetricDef] = &[
    def(
        names::L2_VALUES_REJECTED,
        Counter,
        &["cache", "reason"],
        "Values read from Redis that were not used and were deleted: corrupt (undecodable, or not a string) or oversized (over the read limit, never read whole).",
    ),
    def(
        names::BUS_DROPPED,
        Counter,
        &["cache"],
        "Invalidation-bus messages dropped unread: over the size limit, or not a message of this bus.",
    ),
    def(
        names::FILLS_FENCED,
        Counter,
        &["cache"],
        "Values read from L2 or loaded that were not kept because their key was invalidated while they were read (they may predate the invalidation); a load's L2 write taken back included.",
    ),
    def(
        names::REQUESTS,
        Counter,
        &["cache", "tier", "result"],
        "Cache lookups by the tier that answered (l1/l2 hit, source miss).",
    ),
    def(
        names::LOADS,
        Counter,
        &["cache", "outcome"],
        "Loader runs by outcome (ok, absent, error, timeout, panic).",
    ),
    def(
        names::LOAD_DURATION,
        Histogram,
        &["cache"],
        "Loader run time in seconds.",
    ),
    def(
        names::COALESCED,
        Counter,
        &["cache"],
        "Callers that joined another caller's load instead of loading.",
    ),
    def(
        names::FLEET_LEASES,
        Counter,
        &["cache", "outcome"],
        "Fleet-wide single flight per missed key: acquired, waited, timed_out or local.",
    ),
    def(
        names::FLEET_WAIT,
        Histogram,
        &["cache"],
        "Seconds an instance waited for another instance's load of the same key.",
    ),
    def(
        names::STALE_SERVED,
        Counter,
        &["cache"],
        "Stale values served because the loader failed or was slow.",
    ),
    def(
        names::BLOOM_REJECTIONS,
        Counter,
        &["cache"],
        "Lookups refused by the bloom guard (key never seen).",
    ),
    def(
        names::REFRESHES,
        Counter,
        &["cache", "kind"],
        "Background refreshes by trigger (threshold, xfetch) and failures (error).",
    ),
    def(
        names::L2_OP_DURATION,
        Histogram,
        &["cache", "op"],
        "Redis (L2) operation time in seconds.",
    ),
    def(
        names::L2_ERRORS,
        Counter,
        &["cache", "kind"],
        "Redis (L2) faults by kind (timeout, unavailable, rejected by the open breaker) and refusals (refused, denied).",
    ),
    def(
        names::FAIL_OPEN,
        Counter,
        &["cache"],
        "Redis (L2) faults absorbed by fail-open (served as a miss or an unthrown write).",
    ),
    def(
        names::BREAKER_STATE,
        Gauge,
        &["cache"],
        "Circuit breaker state of the Redis tier: 0 closed, 1 half-open, 2 open.",
    ),
    def(
        names::BREAKER_TRANSITIONS,
        Counter,
        &["cache", "from", "to"],
        "Circuit breaker state transitions.",
    ),
    def(
        names::EVICTIONS,
        Counter,
        &["cache", "reason"],
        "L1 entries dropped by reason (capacity, weight, expired, removed).",
    ),
    def(
        names::L1_ENTRIES,
        Gauge,
        &["cache"],
        "Entries held in the in-process L1.",
    ),
    def(
        names::L1_MAX_ENTRIES,
        Gauge,
        &["cache"],
        "The L1 entry bound.",
    ),
    def(
        names::L1_WEIGHT,
        Gauge,
        &["cache"],
        "Total weight held in L1 (bytes with the default weigher).",
    ),
    def(
        names::BUS_MESSAGES,
        Counter,
        &["cache"],
        "Invalidations received from other instances over the bus.",
    ),
    def(
        names::BUS_GAPS,
        Counter,
        &["cache"],
        "Invalidation-bus gaps (history lost: Redis restarted or failed over, or the stream was trimmed); each one handled by the gap policy.",
    ),
    def(
        names::BUS_REPLAYED,
        Counter,
        &["cache"],
        "Invalidations published while the bus was disconnected and read after it reconnected.",
    ),
    def(
        names::BUS_RECONNECTS,
        Counter,
        &["cache"],
        "Times the invalidation-bus connection was re-established after it was lost.",
    ),
    def(
        names::RECOVERY_PENDING,
        Gauge,
        &["cache"],
        "Writes and invalidations waiting for Redis in the recovery queue.",
    ),
    def(
        names::RECOVERY_REPLAYED,
        Counter,
        &["cache"],
        "Queued writes and invalidations applied to Redis and published after an outage.",
    ),
    def(
        names::RECOVERY_DROPPED,
        Counter,
        &["cache"],
        "Queued writes and invalidations dropped (queue full, or refused by Redis).",
    ),
    def(
        names::BUS_PUBLISH_ERRORS,
        Counter,
        &["cache"],
        "Invalidations that could not be published to other instances.",
    ),
    def(
        names::BUS_CONNECTED,
        Gauge,
        &["cache"],
        "1 while the invalidation bus is subscribed, else 0.",
    ),
];

/// Looks a metric up by name.
#[must_use]
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    CATALOG.iter().find(|m| m.name == name)
}

/// Registers the help text and unit of every metric with the installed recorder.
///
/// Call it once after installing a recorder of your own;
/// [`PrometheusExporter::install`] does it for you. Without a recorder it does
/// nothing.
pub fn describe() {
    for m in CATALOG {
        match (m.kind, m.unit) {
            (Counter, Some(u)) => metrics::describe_counter!(m.name, u, m.help),
            (Counter, None) => metrics::describe_counter!(m.name, m.help),
            (Gauge, Some(u)) => metrics::describe_gauge!(m.name, u, m.help),
            (Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (Histogram, Some(u)) => metrics::describe_histogram!(m.name, u, m.help),
            (Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in CATALOG {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("cache_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{} is not snake_case",
                m.name
            );
            match m.kind {
                Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                Histogram => assert!(m.name.ends_with("_seconds"), "{}", m.name),
                Gauge => assert!(!m.name.ends_with("_total"), "{}", m.name),
            }
            assert_eq!(m.labels.first(), Some(&"cache"), "{}", m.name);
            assert!(!m.labels.contains(&"key"), "{} is keyed", m.name);
            assert!(m.help.ends_with('.'), "{}", m.name);
        }
    }

    #[test]
    fn lookup_finds_catalogued_names_only() {
        assert_eq!(
            lookup(names::BREAKER_STATE).map(|m| m.kind),
            Some(MetricKind::Gauge)
        );
        assert!(lookup("cache_nonexistent_total").is_none());
    }
}
