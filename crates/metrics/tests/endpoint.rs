//! The HTTP endpoint over a real socket: status codes, JSON shapes, scrape-time
//! recording, check timeouts, mounting into another router, shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::HealthStatus;
use cache_metrics::PrometheusExporter;
use cache_metrics::http::{BoxFuture, Endpoint, EndpointError, HealthSource, SourceHealth};
use cache_testkit::http_get;
use serde_json::{Value, json};
use status::Status;

mod status {
    use std::sync::Mutex;

    use cache_core::HealthStatus;

    /// A status the test flips while the server runs.
    #[derive(Default)]
    pub(crate) struct Status(Mutex<Option<HealthStatus>>);

    impl Status {
        pub(crate) fn set(&self, s: HealthStatus) {
            *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(s);
        }
        pub(crate) fn get(&self) -> HealthStatus {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .unwrap_or(HealthStatus::Healthy)
        }
    }
}

#[derive(Clone, Default)]
struct Fake {
    name: &'static str,
    status: Arc<Status>,
    recorded: Arc<AtomicUsize>,
    hang: bool,
}

impl Fake {
    fn named(name: &'static str) -> Self {
        Fake {
            name,
            ..Fake::default()
        }
    }
}

impl HealthSource for Fake {
    fn name(&self) -> &str {
        self.name
    }
    fn check(&self) -> BoxFuture<'_, SourceHealth> {
        Box::pin(async move {
            if self.hang {
                std::future::pending::<()>().await;
            }
            let status = self.status.get();
            SourceHealth::new(status, json!({ "cache": self.name, "status": status }))
        })
    }
    fn record_metrics(&self) {
        self.recorded.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!(cache_metrics::names::L1_ENTRIES, "cache" => self.name)
            .set(self.recorded.load(Ordering::SeqCst) as f64);
    }
}

fn body_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_worst_source_with_200_or_503() {
    let users = Fake::named("users");
    let orders = Fake::named("orders");
    let endpoint = Endpoint::builder()
        .cache(users.clone())
        .cache(orders.clone())
        .build()
        .expect("config");
    let server = endpoint.serve("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr();

    let r = http_get(addr, "/health/cache").await.expect("get");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = body_json(&r.body);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["caches"].as_array().map(Vec::len), Some(2));

    orders.status.set(HealthStatus::Degraded);
    let r = http_get(addr, "/health/cache").await.expect("get");
    assert_eq!(
        (r.status, body_json(&r.body)["status"].clone()),
        (200, json!("degraded"))
    );

    users.status.set(HealthStatus::Unhealthy);
    let r = http_get(addr, "/health/cache").await.expect("get");
    assert_eq!(
        (r.status, body_json(&r.body)["status"].clone()),
        (503, json!("unhealthy"))
    );

    // One cache by name: its own status decides the code.
    let r = http_get(addr, "/health/cache/orders").await.expect("get");
    assert_eq!(r.status, 200);
    assert_eq!(
        body_json(&r.body),
        json!({"cache": "orders", "status": "degraded"})
    );
    let r = http_get(addr, "/health/cache/users").await.expect("get");
    assert_eq!(r.status, 503);
    let r = http_get(addr, "/health/cache/nope").await.expect("get");
    assert_eq!(r.status, 404);

    // No exporter configured: no /metrics route.
    let r = http_get(addr, "/metrics").await.expect("get");
    assert_eq!(r.status, 404);

    server.shutdown().await.expect("clean shutdown");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_check_reports_unhealthy_within_the_timeout() {
    let endpoint = Endpoint::builder()
        .cache(Fake {
            name: "stuck",
            hang: true,
            ..Fake::default()
        })
        .cache(Fake::named("fine"))
        .check_timeout(Duration::from_millis(100))
        .build()
        .expect("config");
    let server = endpoint.serve("127.0.0.1:0").await.expect("bind");
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        http_get(server.local_addr(), "/health/cache"),
    )
    .await
    .expect("answered despite the hanging check")
    .expect("get");
    assert_eq!(r.status, 503);
    let body = body_json(&r.body);
    assert_eq!(body["caches"][0]["cache"], "stuck");
    assert_eq!(body["caches"][0]["status"], "unhealthy");
    assert!(
        body["caches"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("100ms"))
    );
    assert_eq!(body["caches"][1]["status"], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_recorded_at_scrape_time_and_served_as_prometheus_text() {
    let exporter = PrometheusExporter::install().expect("first recorder of this process");
    let users = Fake::named("users");
    let endpoint = Endpoint::builder()
        .metrics(exporter)
        .cache(users.clone())
        .build()
        .expect("config");
    metrics::counter!(cache_metrics::names::REQUESTS, "cache" => "users", "tier" => "l1", "result" => "hit")
        .increment(7);
    let server = endpoint.serve("127.0.0.1:0").await.expect("bind");

    for scrape in 1..=2 {
        let r = http_get(server.local_addr(), "/metrics")
            .await
            .expect("get");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some(cache_metrics::http::METRICS_CONTENT_TYPE)
        );
        assert!(
            r.body
                .contains(r#"cache_requests_total{cache="users",tier="l1",result="hit"} 7"#),
            "{}",
            r.body
        );
        assert!(
            r.body.contains("# HELP cache_requests_total Cache lookups"),
            "{}",
            r.body
        );
        // record_metrics ran before this render.
        assert!(
            r.body
                .contains(&format!(r#"cache_l1_entries{{cache="users"}} {scrape}"#)),
            "{}",
            r.body
        );
    }
    assert_eq!(users.recorded.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_mounts_under_a_prefix_of_the_users_app() {
    let endpoint = Endpoint::builder()
        .cache(Fake::named("users"))
        .build()
        .expect("config");
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .nest("/ops", endpoint.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let r = http_get(addr, "/ops/health/cache").await.expect("get");
    assert_eq!(r.status, 200);
    assert_eq!(body_json(&r.body)["caches"][0]["cache"], "users");
    assert_eq!(http_get(addr, "/").await.expect("get").body, "home");
    assert_eq!(
        http_get(addr, "/health/cache").await.expect("get").status,
        404
    );
    task.abort();
}

#[test]
fn invalid_configurations_fail_at_build() {
    let dup = Endpoint::builder()
        .cache(Fake::named("users"))
        .cache(Fake::named("users"))
        .build();
    assert_eq!(
        dup.err(),
        Some(EndpointError::DuplicateName("users".into()))
    );
    let empty = Endpoint::builder().cache(Fake::named("")).build();
    assert_eq!(empty.err(), Some(EndpointError::EmptyName));
    let zero = Endpoint::builder().check_timeout(Duration::ZERO).build();
    assert_eq!(zero.err(), Some(EndpointError::ZeroTimeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalogued_metric_renders_as_promtool_clean_exposition() {
    let exporter = PrometheusExporter::install().expect("recorder");
    for m in cache_metrics::CATALOG {
        // One sample per metric, with every label it declares.
        let labels: Vec<metrics::Label> = m
            .labels
            .iter()
            .map(|k| metrics::Label::new(*k, "x"))
            .collect();
        let key = metrics::Key::from_parts(m.name, labels);
        let meta = metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);
        metrics::with_recorder(|r| match m.kind {
            cache_metrics::MetricKind::Counter => r.register_counter(&key, &meta).increment(1),
            cache_metrics::MetricKind::Gauge => r.register_gauge(&key, &meta).set(1.0),
            cache_metrics::MetricKind::Histogram => r.register_histogram(&key, &meta).record(0.003),
        });
    }
    let text = exporter.render();
    for m in cache_metrics::CATALOG {
        assert!(
            text.contains(&format!("# HELP {} ", m.name)),
            "no HELP for {}",
            m.name
        );
    }
    assert!(
        text.contains("cache_load_duration_seconds_bucket{"),
        "histograms have buckets"
    );
    cache_testkit::promtool(&["check", "metrics"], None, &text).unwrap_or_else(|e| panic!("{e}"));
    // ... and the lint does bite: a counter without `_total` in abbreviated units.
    let bad = "# HELP cache_x_ms things.\n# TYPE cache_x_ms counter\ncache_x_ms 1\n";
    assert!(cache_testkit::promtool(&["check", "metrics"], None, bad).is_err());
}
