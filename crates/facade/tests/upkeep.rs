//! A recorder the application installed sees L1 hits (counted in striped
//! counters, not on every hit) without anyone calling `record_metrics`.
#![cfg(feature = "prometheus")]

use cache_testkit::eventually;
use resilient_cache::{Cache, PrometheusExporter};

fn l1_hits(text: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with("cache_requests_total{"))
        .find(|l| l.contains("cache=\"upkeep\"") && l.contains("tier=\"l1\""))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test]
async fn l1_hits_reach_an_installed_recorder_by_themselves() {
    let exporter = PrometheusExporter::install().expect("recorder");
    let cache: Cache<u64, u64> = Cache::builder("upkeep").build().expect("build");
    cache
        .get_or_load(1, |k| async move { Some(k) })
        .await
        .expect("load");
    for _ in 0..5 {
        assert_eq!(cache.get(&1).await.expect("hit"), Some(1));
    }
    assert_eq!(cache.stats().l1_hits, 5);
    eventually("the recorder sees the 5 L1 hits", || {
        l1_hits(&exporter.render()) == Some(5.0)
    })
    .await;
}
