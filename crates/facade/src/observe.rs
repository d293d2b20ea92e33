//! `Cache` as a health source of the `/metrics` + `/health/cache` endpoint.

use std::hash::Hash;
use std::time::Duration;

use cache_core::{CacheKey, Codec, DecodeKey};
use cache_metrics::http::{BoxFuture, Drained, HealthSource, SourceHealth};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::Cache;

impl<K, V, C> HealthSource for Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    fn name(&self) -> &str {
        self.name()
    }

    fn check(&self) -> BoxFuture<'_, SourceHealth> {
        Box::pin(async move {
            let report = self.health().await;
            let status = report.status;
            let body = serde_json::to_value(&report).unwrap_or_else(
                |e| json!({ "cache": report.cache, "status": status, "error": e.to_string() }),
            );
            SourceHealth::new(status, body)
        })
    }

    fn record_metrics(&self) {
        Cache::record_metrics(self);
    }

    fn drain(&self, deadline: Duration) -> BoxFuture<'_, Option<Drained>> {
        Box::pin(async move {
            let report = self.shutdown(deadline).await;
            Some(Drained {
                name: self.name().to_owned(),
                complete: report.is_complete(),
                report: json!({
                    "cache": self.name(),
                    "writes_left": report.writes_left,
                    "recovery_left": report.recovery_left,
                    "elapsed_ms": report.elapsed.as_millis() as u64,
                }),
            })
        })
    }
}
