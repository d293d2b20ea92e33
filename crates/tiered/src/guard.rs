//! Every L2 call goes through [`TieredStore::guarded`]: a breaker permit, one
//! duration sample, classification of the fault, fail-open or fail-closed.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::{CacheError, CacheKey, Codec, DecodeKey};
use cache_store_redis::{Action, RedisStore};
use serde::Serialize;
use serde::de::DeserializeOwned;

use cache_metrics::names as metric_names;

use crate::config::FailMode;
use crate::log::log_warn;
use crate::meters::Count;
use crate::tiered::TieredStore;

/// Lets one log event through per second (the time is the L1 clock's, in ms).
#[derive(Default)]
pub(crate) struct OncePerSecond(AtomicU64);

impl OncePerSecond {
    pub(crate) fn allow(&self, now_ms: u64) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        (last == 0 || now_ms >= last.saturating_add(1_000))
            && self
                .0
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
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
    Lease,
    Clear,
}

impl L2Op {
    pub(crate) const COUNT: usize = 11;
    pub(crate) const ALL: [L2Op; L2Op::COUNT] = [
        L2Op::Get,
        L2Op::Put,
        L2Op::PutMany,
        L2Op::Publish,
        L2Op::Remove,
        L2Op::GetMany,
        L2Op::RemoveMany,
        L2Op::InvalidateTag,
        L2Op::InvalidatePrefix,
        L2Op::Lease,
        L2Op::Clear,
    ];

    pub(crate) fn as_str(self) -> &'static str {
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
            L2Op::Lease => "lease",
            L2Op::Clear => "clear",
        }
    }
}

/// One histogram handle per [`L2Op`], registered when the store is built, so an
/// operation records its duration without building a metric key.
pub(crate) fn op_durations(name: &Arc<str>) -> [metrics::Histogram; L2Op::COUNT] {
    L2Op::ALL.map(|op| {
        metrics::histogram!(
            metric_names::L2_OP_DURATION,
            "cache" => name.to_string(),
            "op" => op.as_str()
        )
    })
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Redis just answered a `PING` of our own (a health check, the recovery
    /// worker): let that count as the breaker's half-open probes, so an idle
    /// cache — every request an L1 hit, none reaching L2 — does not keep its
    /// breaker open (and its health degraded) after Redis is back. Does nothing
    /// while the breaker is closed or still inside its open wait.
    pub(crate) fn breaker_saw_redis_answer(&self) {
        let Some(l2) = &self.inner.l2 else {
            return;
        };
        for _ in 0..16 {
            if l2.breaker.state() == cache_breaker::State::Closed {
                return;
            }
            match l2.breaker.try_acquire() {
                Ok(permit) => permit.success(),
                Err(_) => return,
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
        self.guarded_as(self.inner.mode, op, f).await
    }

    /// [`guarded`](Self::guarded) under the fail mode `mode` (one call's own).
    pub(crate) async fn guarded_as<'a, T, F, Fut>(
        &'a self,
        mode: FailMode,
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
        let counters = &self.inner.meters;
        let Ok(permit) = l2.breaker.try_acquire() else {
            counters.record(Count::L2Rejected);
            self.l2_error_metric("rejected");
            return self.degrade(
                mode,
                CacheError::Unavailable {
                    backend: "redis",
                    message: "skipped: the circuit breaker is open".into(),
                    source: None,
                },
            );
        };
        let started = std::time::Instant::now();
        let result = f(&l2.store).await;
        self.inner.op_durations[op as usize].record(started.elapsed().as_secs_f64());
        match result {
            Ok(v) => {
                permit.success();
                Ok(Some(v))
            }
            Err(e) if e.is_backend_fault() || e.is_backend_refusal() => {
                // A refusal means Redis answered: it is alive. Not a breaker
                // failure (one OOM must not switch L2 off for reads that still
                // work); counted apart, and fail-open absorbs it like a fault.
                let refused = e.is_backend_refusal();
                if refused {
                    permit.success();
                    counters.record(Count::L2Refused);
                } else {
                    permit.failure();
                    counters.record(Count::L2Error);
                    if matches!(e, CacheError::Timeout { .. }) {
                        counters.record(Count::L2Timeout);
                    }
                }
                let now_ms = self.inner.l1.clock().now().as_millis();
                if self.inner.logs.fault_logged.allow(now_ms) {
                    log_warn!(
                        cache = %self.inner.name,
                        op = op.as_str(),
                        error = %e,
                        "{} (at most one such warning a second)",
                        if refused {
                            "Redis (L2) refused an operation; the breaker stays closed"
                        } else {
                            "Redis (L2) operation failed; serving from L1 and the loader"
                        }
                    );
                }
                self.l2_error_metric(e.kind().as_str());
                self.degrade(mode, e)
            }
            Err(e) => {
                permit.ignore();
                Err(e)
            }
        }
    }

    pub(crate) fn l2_error_metric(&self, kind: &'static str) {
        metrics::counter!(
            metric_names::L2_ERRORS,
            "cache" => self.inner.name.clone(),
            "kind" => kind
        )
        .increment(1);
    }

    pub(crate) fn degrade<T>(
        &self,
        mode: FailMode,
        e: CacheError,
    ) -> Result<Option<T>, CacheError> {
        match mode {
            FailMode::Open => {
                self.inner.meters.record(Count::FailOpen);
                metrics::counter!(metric_names::FAIL_OPEN, "cache" => self.inner.name.clone())
                    .increment(1);
                Ok(None)
            }
            FailMode::Closed => Err(e),
        }
    }

    /// Tells other instances to drop their L1 copies. `Ok(true)` when published;
    /// `Ok(false)` (fail-open) or the error (fail-closed) when not, counted.
    pub(crate) async fn publish(&self, action: Action) -> Result<bool, CacheError> {
        let Some(bus) = self.inner.l2.as_ref().and_then(|l2| l2.bus.as_ref()) else {
            return Ok(true);
        };
        let published = self
            .guarded(L2Op::Publish, |_| async move { bus.publish(action).await })
            .await;
        match published {
            Ok(Some(_)) => Ok(true),
            Ok(None) => {
                self.inner.meters.record(Count::PublishError);
                Ok(false)
            }
            Err(e) => {
                self.inner.meters.record(Count::PublishError);
                Err(e)
            }
        }
    }
}
