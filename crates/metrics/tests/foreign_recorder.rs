//! Its own test binary: it installs a foreign global recorder, which would break
//! every other test of a shared process.

#[test]
fn a_foreign_recorder_makes_install_fail_with_a_typed_error() {
    metrics::set_global_recorder(metrics::NoopRecorder).expect("first recorder");
    let err = cache_metrics::PrometheusExporter::install().expect_err("slot taken");
    assert!(matches!(
        err,
        cache_metrics::ExporterError::AlreadyInstalled
    ));
    assert!(cache_metrics::PrometheusExporter::installed().is_none());
}
