//! `/metrics` and `/health/cache` over HTTP: an axum [`Router`] to merge into your
//! own app, or a standalone server.
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text format (only when an exporter was given) |
//! | `GET /health/cache` | `{"status": …, "caches": [report, …]}`; 200 when healthy or degraded, 503 when unhealthy |
//! | `GET /health/cache/{name}` | one cache's report, same status codes; 404 for an unknown name |
//!
//! ```
//! use cache_core::HealthStatus;
//! use cache_metrics::http::{BoxFuture, Endpoint, HealthSource, SourceHealth};
//!
//! /// Anything with a name and a health check can be served; the cache facade's
//! /// `Cache` implements this trait with its feature `http`.
//! struct Disk;
//! impl HealthSource for Disk {
//!     fn name(&self) -> &str { "disk" }
//!     fn check(&self) -> BoxFuture<'_, SourceHealth> {
//!         Box::pin(async {
//!             SourceHealth::new(HealthStatus::Degraded, serde_json::json!({"free": "3%"}))
//!         })
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let exporter = cache_metrics::PrometheusExporter::install()?;
//! let endpoint = Endpoint::builder().metrics(exporter).cache(Disk).build()?;
//!
//! // Mount it into your own router ...
//! let _app: axum::Router = axum::Router::new().merge(endpoint.router());
//! // ... or run it on its own port.
//! let server = endpoint.serve("127.0.0.1:0").await?;
//! println!("health at http://{}/health/cache", server.local_addr());
//!
//! let (status, body) = endpoint.health().await;
//! assert_eq!(status, HealthStatus::Degraded);
//! assert_eq!(body["caches"][0]["free"], "3%");
//! server.shutdown().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cache_core::HealthStatus;
use serde_json::{Value, json};

/// The boxed future a [`HealthSource`] returns (re-exported so that implementors
/// need no `futures` dependency of their own).
pub use futures_util::future::BoxFuture;

use crate::PrometheusExporter;

/// The Prometheus text format's content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Default bound on one health check (a cache pings Redis within its own op
/// timeout, so this only catches a check that hangs).
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Something the endpoint reports on: typically a cache.
pub trait HealthSource: Send + Sync + 'static {
    /// The name shown in reports and used in `/health/cache/{name}`.
    fn name(&self) -> &str;

    /// Runs a health check.
    fn check(&self) -> BoxFuture<'_, SourceHealth>;

    /// Records metrics that are read at scrape time (sizes, absolute counters).
    /// Called before every `/metrics` render; the default does nothing.
    fn record_metrics(&self) {}

    /// Finishes the source's background work before the process exits, within
    /// `deadline`, and says what it could not finish; `None` (the default) when
    /// the source has nothing to drain. Called by [`Endpoint::drain`] and
    /// [`Server::shutdown_and_drain`]; a `Cache` drains its pending L2 writes
    /// and its recovery queue.
    fn drain(&self, deadline: Duration) -> BoxFuture<'_, Option<Drained>> {
        let _ = deadline;
        Box::pin(async { None })
    }
}

/// What one source's [`HealthSource::drain`] finished and left.
#[derive(Debug, Clone, PartialEq)]
pub struct Drained {
    /// The source's name.
    pub name: String,
    /// Whether everything was finished before the deadline.
    pub complete: bool,
    /// The details as JSON (for a cache: writes and queued changes left, time taken).
    pub report: Value,
}

/// One source's answer to a health check.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceHealth {
    /// Its condition.
    pub status: HealthStatus,
    /// The report served as JSON.
    pub report: Value,
}

impl SourceHealth {
    /// A status with its JSON report.
    #[must_use]
    pub fn new(status: HealthStatus, report: Value) -> Self {
        Self { status, report }
    }
}

/// The HTTP status for a health status: 503 only when unhealthy (a degraded cache
/// still answers, so load balancers should keep sending traffic).
#[must_use]
pub fn http_status(status: HealthStatus) -> StatusCode {
    match status {
        HealthStatus::Healthy | HealthStatus::Degraded => StatusCode::OK,
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// An invalid endpoint configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointError {
    /// Two sources share a name, so `/health/cache/{name}` would be ambiguous.
    #[error("two health sources are named {0:?}")]
    DuplicateName(String),
    /// A source has an empty name.
    #[error("a health source has an empty name")]
    EmptyName,
    /// The check timeout is zero.
    #[error("check_timeout must be greater than zero")]
    ZeroTimeout,
}

/// Configures an [`Endpoint`].
#[must_use]
pub struct EndpointBuilder {
    exporter: Option<PrometheusExporter>,
    sources: Vec<Arc<dyn HealthSource>>,
    check_timeout: Duration,
}

impl fmt::Debug for EndpointBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointBuilder")
            .field("metrics", &self.exporter.is_some())
            .field(
                "sources",
                &self.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("check_timeout", &self.check_timeout)
            .finish()
    }
}

impl EndpointBuilder {
    /// Serves `/metrics` from this exporter.
    pub fn metrics(mut self, exporter: PrometheusExporter) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// Adds a source (a cache) to `/health/cache`.
    pub fn cache(self, source: impl HealthSource) -> Self {
        self.source(Arc::new(source))
    }

    /// Adds a shared source.
    pub fn source(mut self, source: Arc<dyn HealthSource>) -> Self {
        self.sources.push(source);
        self
    }

    /// Bounds each health check (default [`DEFAULT_CHECK_TIMEOUT`]); a check that
    /// overruns reports the source unhealthy.
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    /// [`EndpointError`] for duplicate or empty source names or a zero timeout.
    pub fn build(self) -> Result<Endpoint, EndpointError> {
        if self.check_timeout.is_zero() {
            return Err(EndpointError::ZeroTimeout);
        }
        let mut names = HashSet::new();
        for s in &self.sources {
            if s.name().is_empty() {
                return Err(EndpointError::EmptyName);
            }
            if !names.insert(s.name().to_owned()) {
                return Err(EndpointError::DuplicateName(s.name().to_owned()));
            }
        }
        Ok(Endpoint {
            inner: Arc::new(Inner {
                exporter: self.exporter,
                sources: self.sources,
                check_timeout: self.check_timeout,
            }),
        })
    }
}

struct Inner {
    exporter: Option<PrometheusExporter>,
    sources: Vec<Arc<dyn HealthSource>>,
    check_timeout: Duration,
}

/// Serves `/metrics` and `/health/cache`. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("metrics", &self.inner.exporter.is_some())
            .field("sources", &self.inner.sources.len())
            .finish()
    }
}

impl Endpoint {
    /// Starts a configuration.
    pub fn builder() -> EndpointBuilder {
        EndpointBuilder {
            exporter: None,
            sources: Vec::new(),
            check_timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }

    /// The routes, ready to merge into an application's router
    /// (`Router::new().merge(endpoint.router())`) or to nest under a prefix.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/health/cache", get(health_all))
            .route("/health/cache/{name}", get(health_one));
        if self.inner.exporter.is_some() {
            router = router.route("/metrics", get(metrics_text));
        }
        router.with_state(self.clone())
    }

    /// The exposition text, after every source recorded its scrape-time metrics;
    /// `None` without an exporter.
    #[must_use]
    pub fn render_metrics(&self) -> Option<String> {
        let exporter = self.inner.exporter.as_ref()?;
        for s in &self.inner.sources {
            s.record_metrics();
        }
        Some(exporter.render())
    }

    /// Checks every source concurrently: the worst status and
    /// `{"status": …, "caches": [report, …]}`.
    pub async fn health(&self) -> (HealthStatus, Value) {
        let checks = self.inner.sources.iter().map(|s| self.check(s.as_ref()));
        let results = futures_util::future::join_all(checks).await;
        let status = results
            .iter()
            .map(|r| r.status)
            .max()
            .unwrap_or(HealthStatus::Healthy);
        let caches: Vec<Value> = results.into_iter().map(|r| r.report).collect();
        (status, json!({ "status": status, "caches": caches }))
    }

    /// Checks one source by name.
    pub async fn health_of(&self, name: &str) -> Option<SourceHealth> {
        let source = self.inner.sources.iter().find(|s| s.name() == name)?;
        Some(self.check(source.as_ref()).await)
    }

    /// Drains every source concurrently within `deadline` (see
    /// [`HealthSource::drain`]): call it when the service shuts down, after it
    /// stopped taking requests. Sources with nothing to drain are left out.
    pub async fn drain(&self, deadline: Duration) -> Vec<Drained> {
        let drains = self.inner.sources.iter().map(|s| s.drain(deadline));
        futures_util::future::join_all(drains)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn check(&self, source: &dyn HealthSource) -> SourceHealth {
        let timeout = self.inner.check_timeout;
        match tokio::time::timeout(timeout, source.check()).await {
            Ok(h) => h,
            Err(_) => SourceHealth::new(
                HealthStatus::Unhealthy,
                json!({
                    "cache": source.name(),
                    "status": HealthStatus::Unhealthy,
                    "error": format!("health check took longer than {timeout:?}"),
                }),
            ),
        }
    }

    /// Binds `addr` and serves the routes on a spawned task until
    /// [`Server::shutdown`] (or the [`Server`] is dropped).
    ///
    /// # Errors
    /// The bind error (address in use, permission, …).
    pub async fn serve(&self, addr: impl tokio::net::ToSocketAddrs) -> io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = self.router();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Server {
            endpoint: self.clone(),
            local_addr,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running standalone endpoint.
#[derive(Debug)]
pub struct Server {
    endpoint: Endpoint,
    local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl Server {
    /// The bound address (useful after binding port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets in-flight requests finish, and waits.
    ///
    /// # Errors
    /// The server's I/O error, if it failed.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }

    /// The service's shutdown in one call: stops accepting, lets in-flight
    /// requests finish, then drains every source ([`Endpoint::drain`]) within
    /// what is left of `deadline`. Returns what each source finished and left.
    ///
    /// # Errors
    /// The server's I/O error, if it failed (the sources are drained anyway).
    pub async fn shutdown_and_drain(self, deadline: Duration) -> io::Result<Vec<Drained>> {
        let start = tokio::time::Instant::now();
        let endpoint = self.endpoint.clone();
        let stopped = tokio::time::timeout(deadline, self.shutdown()).await;
        let left = deadline.saturating_sub(start.elapsed());
        let drained = endpoint.drain(left).await;
        match stopped {
            Ok(Err(e)) => Err(e),
            _ => Ok(drained),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn metrics_text(State(endpoint): State<Endpoint>) -> Response {
    match endpoint.render_metrics() {
        Some(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn json_response(status: HealthStatus, body: &Value) -> Response {
    (
        http_status(status),
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn health_all(State(endpoint): State<Endpoint>) -> Response {
    let (status, body) = endpoint.health().await;
    json_response(status, &body)
}

async fn health_one(State(endpoint): State<Endpoint>, Path(name): Path<String>) -> Response {
    match endpoint.health_of(&name).await {
        Some(h) => json_response(h.status, &h.report),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "error": "no such cache" }).to_string(),
        )
            .into_response(),
    }
}
