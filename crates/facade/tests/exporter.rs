//! A service that installed its own Prometheus recorder hands it to the cache's
//! exporter instead of failing with `AlreadyInstalled`.
#![cfg(feature = "prometheus")]

use cache_metrics::metrics_exporter_prometheus::PrometheusBuilder;
use resilient_cache::{Cache, PrometheusExporter};

#[tokio::test]
async fn an_existing_recorder_is_used_not_replaced() {
    let handle = PrometheusBuilder::new()
        .add_global_label("service", "checkout")
        .install_recorder()
        .expect("the service's own recorder");
    let exporter = PrometheusExporter::from_handle(handle.clone());
    assert!(
        PrometheusExporter::install().is_ok(),
        "install finds the handed-over recorder"
    );
    let users: Cache<u64, String> = Cache::builder("users").build().expect("config");
    users.set(1, "Ada".into()).await.expect("set");
    assert_eq!(users.get(&1).await.expect("ok").as_deref(), Some("Ada"));
    users.record_metrics();
    let text = exporter.render();
    assert!(text.contains("# HELP cache_requests_total"), "{text}");
    assert!(
        text.contains(r#"cache_requests_total{service="checkout",cache="users""#),
        "the service's labels and the cache's series, in one exposition: {text}"
    );
    assert!(
        handle.render().contains(
            r#"cache_requests_total{service="checkout",cache="users",tier="l1",result="hit"} 1"#
        ),
        "one recorder, seen through both handles"
    );
}
