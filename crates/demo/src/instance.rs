//! One instance of the example service: `GET /predictions/{id}` through
//! `get_or_load` over a slow simulated model (one load per id for the whole
//! fleet: `#[cached]` would coordinate within one process only), `POST /predictions/{id}` for a
//! correction written to the cache, `GET /stats`, `/metrics` and
//! `/health/cache`. It stops on SIGTERM, Ctrl-C or when its standard input
//! closes (the story that started it is gone), and then drains its cache.

use std::sync::LazyLock;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use resilient_cache::{Cache, Endpoint, PrometheusExporter};
use serde::{Deserialize, Serialize};

/// How long the simulated model takes per prediction.
pub(crate) const MODEL_LATENCY: Duration = Duration::from_millis(40);
/// Ids at or above this do not exist.
const KNOWN_IDS: u64 = 10_000;
/// How long a stopping instance may take to drain its cache.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// What the service returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Prediction {
    id: u64,
    score: f64,
}

/// A correction of one prediction (the body of `POST /predictions/{id}`).
#[derive(Debug, Deserialize)]
struct Correction {
    score: f64,
}

/// Calls that reached the model (the "source").
static SOURCE_CALLS: AtomicU64 = AtomicU64::new(0);

/// Where the cache's L2 lives, set before the cache is first used.
static REDIS_URL: OnceLock<Option<String>> = OnceLock::new();

static PREDICTIONS: LazyLock<Cache<u64, Prediction>> = LazyLock::new(|| {
    let base = || {
        Cache::builder("predictions")
            .default_ttl(Duration::from_secs(300))
            .negative_ttl(Duration::from_secs(30))
            .stale_window(Duration::from_secs(600))
            .op_timeout(Duration::from_millis(250))
    };
    let with_redis = REDIS_URL
        .get()
        .and_then(Option::as_ref)
        .and_then(|url| base().redis_url(url).build().ok());
    with_redis.unwrap_or_else(|| base().build().expect("the memory-only config is valid"))
});

/// The slow model: `None` for an id that does not exist.
async fn model(id: u64) -> Option<Prediction> {
    SOURCE_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(MODEL_LATENCY).await;
    (id < KNOWN_IDS).then(|| Prediction {
        id,
        score: (id % 97) as f64 / 97.0,
    })
}

/// One call of the model per id however many requests (and instances) ask at
/// once; unknown ids are cached as absent.
async fn prediction(Path(id): Path<u64>) -> Response {
    match PREDICTIONS.get_or_load(id, model).await {
        Ok(Some(p)) => Json(p).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such id").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn correct(Path(id): Path<u64>, Json(c): Json<Correction>) -> Response {
    let corrected = Prediction { id, score: c.score };
    match PREDICTIONS.set(id, corrected).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// The cache's counters and the model's calls, for the story's table.
async fn stats() -> Response {
    let mut body = serde_json::to_value(PREDICTIONS.stats()).unwrap_or_default();
    body["source_calls"] = SOURCE_CALLS.load(Ordering::SeqCst).into();
    Json(body).into_response()
}

/// Runs one instance on `port` (0: any free port) until it is told to stop.
pub(crate) async fn run(
    name: &str,
    port: u16,
    redis_url: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let _ = REDIS_URL.set(redis_url);
    let exporter = PrometheusExporter::install()?;
    let cache = PREDICTIONS.clone();
    let endpoint = Endpoint::builder().metrics(exporter).cache(cache).build()?;
    let app = axum::Router::new()
        .route("/predictions/{id}", get(prediction).post(correct))
        .route("/stats", get(stats))
        .merge(endpoint.router());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    // The story reads this line to learn the address.
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::stop_requested(true))
        .await?;
    for d in endpoint.drain(DRAIN_DEADLINE).await {
        eprintln!(
            "instance {name}: cache {} drained{}: {}",
            d.name,
            if d.complete { "" } else { " only in part" },
            d.report
        );
    }
    Ok(())
}
