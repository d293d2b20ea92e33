//! `cargo xtask demo`: an example service whose `GET /predictions/{id}` is cached
//! with `#[cached]` over a slow simulated model, with `/metrics` and
//! `/health/cache` beside it, driven through a scripted story.
//!
//! ```text
//! cargo xtask demo [--serve] [--quick]
//! ```
//!
//! Memory-only by default; with a Redis L2 when `REDIS_URL` is set or a local
//! `redis-server` can be started (then the story includes an outage).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cache_testkit::{RedisServer, http_get};
use resilient_cache::{Cache, Endpoint, PrometheusExporter, cached};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// How long the simulated model takes per prediction.
const MODEL_LATENCY: Duration = Duration::from_millis(40);
/// Ids at or above this do not exist.
const KNOWN_IDS: u64 = 10_000;

/// What the service returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Prediction {
    id: u64,
    score: f64,
}

/// Calls that reached the model (the "source").
static SOURCE_CALLS: AtomicU64 = AtomicU64::new(0);

/// Where the cache's L2 lives, decided before the cache is first used.
static REDIS_URL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

static PREDICTIONS: LazyLock<Cache<u64, Prediction>> = LazyLock::new(|| {
    let base = || {
        Cache::builder("predictions")
            .default_ttl(Duration::from_secs(300))
            .negative_ttl(Duration::from_secs(30))
            .stale_window(Duration::from_secs(600))
            .op_timeout(Duration::from_millis(50))
    };
    let with_redis = REDIS_URL
        .get()
        .and_then(Option::as_ref)
        .and_then(|url| base().redis_url(url).build().ok());
    with_redis.unwrap_or_else(|| base().build().expect("the memory-only config is valid"))
});

/// The slow model, memoized: one call per id however many requests ask at once;
/// unknown ids are cached as absent.
#[cached(cache = PREDICTIONS)]
async fn predict(id: u64) -> Option<Prediction> {
    SOURCE_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(MODEL_LATENCY).await;
    (id < KNOWN_IDS).then(|| Prediction {
        id,
        score: (id % 97) as f64 / 97.0,
    })
}

async fn prediction(Path(id): Path<u64>) -> Response {
    match predict(id).await {
        Some(p) => Json(p).into_response(),
        None => (StatusCode::NOT_FOUND, "no such id").into_response(),
    }
}

/// One step of the story, for the final table.
struct Step {
    name: &'static str,
    requests: usize,
    failed: usize,
    source_calls: u64,
    detail: String,
}

/// Sends `ids` as GET requests, at most `parallel` at a time. Returns the
/// latencies of successful requests (200 or 404) and the number of failures.
async fn drive(addr: SocketAddr, ids: Vec<u64>, parallel: usize) -> (Vec<Duration>, usize) {
    let permits = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(ids.len());
    for id in ids {
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            let start = Instant::now();
            let response = http_get(addr, &format!("/predictions/{id}")).await.ok()?;
            matches!(response.status, 200 | 404).then(|| start.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await.ok().flatten() {
            Some(l) => latencies.push(l),
            None => failed += 1,
        }
    }
    latencies.sort();
    (latencies, failed)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn calls() -> u64 {
    SOURCE_CALLS.load(Ordering::SeqCst)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serve = args.iter().any(|a| a == "--serve");
    let quick = args.iter().any(|a| a == "--quick");
    match run(serve, quick).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(serve: bool, quick: bool) -> Result<(), Box<dyn std::error::Error>> {
    // Redis: REDIS_URL, else a local redis-server we can also kill, else none.
    let mut local = None;
    let url = match std::env::var("REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => match RedisServer::start() {
            Ok(server) => {
                let url = server.url();
                local = Some(server);
                Some(url)
            }
            Err(e) => {
                println!("(no redis-server: {e}; running memory-only)");
                None
            }
        },
    };
    let _ = REDIS_URL.set(url.clone());
    let exporter = PrometheusExporter::install()?;
    let cache = PREDICTIONS.clone();
    let endpoint = Endpoint::builder()
        .metrics(exporter)
        .cache(cache.clone())
        .build()?;
    let app = axum::Router::new()
        .route("/predictions/{id}", get(prediction))
        .merge(endpoint.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let tier = match (&url, &local) {
        (Some(_), Some(_)) => "L1 + Redis L2 (a local redis-server started for the demo)",
        (Some(_), None) => "L1 + Redis L2 (REDIS_URL)",
        _ => "L1 only",
    };
    println!("service on http://{addr} — {tier}; the model takes {MODEL_LATENCY:?} per call\n");

    let mut steps = Vec::new();
    let scale = |full: usize, q: usize| if quick { q } else { full };

    // 1. A cold stampede on one id.
    let before = calls();
    let (lat, failed) = drive(addr, vec![7; 1000], 128).await;
    steps.push(Step {
        name: "cold stampede: 1,000 requests for one id",
        requests: 1000,
        failed,
        source_calls: calls() - before,
        detail: format!(
            "p50 {:.1} ms, p99 {:.1} ms",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        ),
    });

    // 2. Steady hot traffic over 200 ids, skewed.
    let before_stats = cache.stats();
    let before = calls();
    let n = scale(20_000, 2_000);
    let ids: Vec<u64> = (0..n as u64).map(|i| (i * i * 31 + i * 7) % 200).collect();
    let (lat, failed) = drive(addr, ids, 32).await;
    let after = cache.stats();
    let hits = (after.l1_hits + after.l2_hits) - (before_stats.l1_hits + before_stats.l2_hits);
    let lookups = hits + (after.misses - before_stats.misses);
    steps.push(Step {
        name: "hot traffic over 200 ids",
        requests: n,
        failed,
        source_calls: calls() - before,
        detail: format!(
            "hit ratio {:.1} %, p50 {:.2} ms, p99 {:.2} ms",
            100.0 * hits as f64 / lookups.max(1) as f64,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        ),
    });

    // 3. Ids that do not exist: the source is asked once per id.
    let before = calls();
    let ids: Vec<u64> = (0..500).map(|i| 50_000 + i % 10).collect();
    let (_, failed) = drive(addr, ids, 32).await;
    steps.push(Step {
        name: "500 requests for 10 unknown ids (404)",
        requests: 500,
        failed,
        source_calls: calls() - before,
        detail: "negative cache: one source call per unknown id".into(),
    });

    // 4. Redis outage and recovery.
    if let Some(server) = local.as_mut() {
        server.kill();
        let before = calls();
        let n = scale(3_000, 500);
        let ids: Vec<u64> = (0..n as u64).map(|i| (i * 13) % 400).collect();
        let (lat, failed) = drive(addr, ids, 32).await;
        let health = http_get(addr, "/health/cache").await?;
        steps.push(Step {
            name: "Redis killed: mixed traffic over 400 ids",
            requests: n,
            failed,
            source_calls: calls() - before,
            detail: format!(
                "p99 {:.1} ms, /health/cache {} {}",
                pct(&lat, 0.99),
                health.status,
                status_word(&health.body)
            ),
        });
        server.restart()?;
        let back = Instant::now();
        let mut healthy = false;
        while back.elapsed() < Duration::from_secs(15) {
            let _ = drive(addr, vec![back.elapsed().as_millis() as u64 % 400], 1).await;
            let h = http_get(addr, "/health/cache").await?;
            if status_word(&h.body) == "healthy" {
                healthy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        steps.push(Step {
            name: "Redis restarted",
            requests: 0,
            failed: 0,
            source_calls: 0,
            detail: if healthy {
                format!("healthy again after {:.1} s", back.elapsed().as_secs_f64())
            } else {
                "still not healthy after 15 s".into()
            },
        });
    }

    println!(
        "{:<44} {:>8} {:>7} {:>13}  detail",
        "step", "requests", "failed", "source calls"
    );
    for s in &steps {
        println!(
            "{:<44} {:>8} {:>7} {:>13}  {}",
            s.name, s.requests, s.failed, s.source_calls, s.detail
        );
    }
    let total_failed: usize = steps.iter().map(|s| s.failed).sum();
    println!("\nfailed requests in the whole story: {total_failed}");
    let metrics = http_get(addr, "/metrics").await?;
    let lines = metrics
        .body
        .lines()
        .filter(|l| l.starts_with("cache_requests_total"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    println!("\nfrom /metrics:\n  {}", lines.join("\n  "));

    if serve {
        println!(
            "\nserving on http://{addr} — try:\n  curl http://{addr}/predictions/42\n  curl http://{addr}/health/cache\n  curl http://{addr}/metrics\nctrl-c to stop"
        );
        tokio::signal::ctrl_c().await?;
    }
    if total_failed > 0 {
        return Err(format!("{total_failed} requests failed").into());
    }
    Ok(())
}

/// The `status` field of a health JSON body.
fn status_word(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
