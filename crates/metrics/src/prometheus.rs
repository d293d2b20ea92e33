//! Installing the Prometheus recorder.

use std::sync::Mutex;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets (seconds) for every `_seconds` metric: 100 µs to 10 s, which
/// covers an L1-adjacent Redis round trip as well as a slow loader.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How often the background thread drains histogram samples into buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The exporter this crate installed in this process, if any (a mutex, so two
/// racing installers cannot both try the global slot).
static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

fn installed_handle() -> std::sync::MutexGuard<'static, Option<PrometheusHandle>> {
    // A panic while holding this lock leaves the Option intact; keep going.
    INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why the exporter could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExporterError {
    /// A different metrics recorder is already installed in this process.
    #[error("another metrics recorder is already installed in this process")]
    AlreadyInstalled,
    /// The exporter refused its configuration.
    #[error("invalid exporter configuration: {0}")]
    Config(String),
}

/// A handle to the process-wide Prometheus recorder: renders the exposition text
/// served at `/metrics`.
///
/// Install it **before** building caches: the caches register their metric handles
/// when they are built, and handles taken before a recorder exists stay no-ops.
///
/// ```
/// let exporter = cache_metrics::PrometheusExporter::install()?;
/// metrics::counter!(cache_metrics::names::COALESCED, "cache" => "users").increment(2);
/// let text = exporter.render();
/// assert!(text.contains("# HELP cache_coalesced_total"));
/// assert!(text.contains(r#"cache_coalesced_total{cache="users"} 2"#));
/// // Installing again returns the same exporter.
/// assert!(cache_metrics::PrometheusExporter::install().is_ok());
/// # Ok::<(), cache_metrics::ExporterError>(())
/// ```
#[derive(Clone, Debug)]
pub struct PrometheusExporter {
    handle: PrometheusHandle,
}

impl PrometheusExporter {
    /// Installs the Prometheus recorder globally with [`LATENCY_BUCKETS`] for every
    /// `_seconds` histogram, registers the catalogue's help texts, and starts a
    /// background thread that drains histogram samples every 5 s.
    ///
    /// Idempotent: a second call returns the exporter the first one installed
    /// (or the one given to [`from_handle`](Self::from_handle)).
    ///
    /// # Errors
    /// [`ExporterError::AlreadyInstalled`] if some other recorder is installed
    /// and was not handed over with [`from_handle`](Self::from_handle).
    pub fn install() -> Result<Self, ExporterError> {
        Self::install_with(&[])
    }

    /// [`install`](Self::install) with labels added to every series (e.g.
    /// `("service", "checkout")`). Ignored when the exporter is already installed.
    ///
    /// # Errors
    /// As [`install`](Self::install); also [`ExporterError::Config`] for an empty label
    /// name.
    pub fn install_with(global_labels: &[(&str, &str)]) -> Result<Self, ExporterError> {
        let mut installed = installed_handle();
        if let Some(handle) = installed.as_ref() {
            return Ok(Self {
                handle: handle.clone(),
            });
        }
        let mut builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .map_err(|e| ExporterError::Config(e.to_string()))?;
        for (k, v) in global_labels {
            if k.is_empty() {
                return Err(ExporterError::Config(
                    "a global label has an empty name".into(),
                ));
            }
            builder = builder.add_global_label(*k, *v);
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            return Err(ExporterError::AlreadyInstalled);
        }
        *installed = Some(handle.clone());
        drop(installed);
        crate::describe();
        let upkeep = handle.clone();
        // The thread lives as long as the process, like the global recorder it serves.
        let _ = std::thread::Builder::new()
            .name("cache-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        Ok(Self { handle })
    }

    /// An exporter over a recorder the service installed itself (its own
    /// `PrometheusBuilder` settings, its own `/metrics` route): the caches record
    /// into whatever recorder is global, and this handle renders it for
    /// [`Endpoint`](crate::http::Endpoint) or the service. The catalogue's help
    /// texts are registered with the global recorder. Histogram upkeep stays the
    /// service's (`PrometheusHandle::run_upkeep`, or a builder that runs it).
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    ///
    /// // The service's own recorder, installed before anything else.
    /// let handle = PrometheusBuilder::new().install_recorder()?;
    /// let exporter = cache_metrics::PrometheusExporter::from_handle(handle);
    /// metrics::counter!(cache_metrics::names::COALESCED, "cache" => "users").increment(1);
    /// assert!(exporter.render().contains(r#"cache_coalesced_total{cache="users"} 1"#));
    /// assert!(exporter.render().contains("# HELP cache_coalesced_total"));
    /// // `install` now finds it and returns the same exporter.
    /// assert!(cache_metrics::PrometheusExporter::install().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn from_handle(handle: PrometheusHandle) -> Self {
        let mut installed = installed_handle();
        let first = installed.is_none();
        if first {
            *installed = Some(handle.clone());
        }
        drop(installed);
        if first {
            crate::describe();
        }
        Self { handle }
    }

    /// The exporter installed by [`install`](Self::install), if any.
    #[must_use]
    pub fn installed() -> Option<Self> {
        installed_handle()
            .as_ref()
            .map(|h| Self { handle: h.clone() })
    }

    /// The current exposition text (Prometheus text format 0.0.4).
    #[must_use]
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// The underlying `metrics-exporter-prometheus` handle.
    #[must_use]
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }
}
