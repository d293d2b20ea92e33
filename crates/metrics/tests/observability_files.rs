//! The deployable files under `docs/` agree with the code: alert rules pass
//! `promtool check rules` and their unit tests, every metric they or the dashboard
//! name is in the catalogue, every alert has a summary and a runbook section that
//! exists, and every catalogued metric is on the dashboard and in the runbook.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cache_metrics::{CATALOG, MetricKind};

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(docs().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `cache_…` metric name in `text`, with histogram series suffixes mapped
/// back to the histogram's name. Recording-rule names (`cache:…`) are skipped.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("cache_") {
        let start = i + pos;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            let name = &text[start..end];
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| {
                    CATALOG
                        .iter()
                        .any(|m| m.name == *b && m.kind == MetricKind::Histogram)
                })
                .unwrap_or(name);
            out.insert(base.to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

fn catalogued(name: &str) -> bool {
    CATALOG.iter().any(|m| m.name == name)
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let dir = docs().join("observability");
    let checked = cache_testkit::promtool(&["check", "rules", "alerts.yml"], Some(&dir), "")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = cache_testkit::promtool(&["test", "rules", "alerts_test.yml"], Some(&dir), "")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn promtool_rejects_a_broken_rule_file() {
    // The check above can fail: a rule with a PromQL syntax error is refused.
    let dir = std::env::temp_dir().join(format!("cache-metrics-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    std::fs::write(
        dir.join("bad.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(cache_requests_total[5m]\n",
    )
    .expect("write");
    let result = cache_testkit::promtool(&["check", "rules", "bad.yml"], Some(&dir), "");
    let _ = std::fs::remove_dir_all(&dir);
    // Refused by promtool itself: a missing promtool is not a pass.
    assert!(
        matches!(result, Err(cache_testkit::TestkitError::ToolFailed(_))),
        "promtool accepted a broken rule (or did not run): {result:?}"
    );
}

#[test]
fn every_alert_has_a_summary_and_a_runbook_section() {
    let rules = read("observability/alerts.yml");
    let runbook = read("operations.md");
    let headings: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let alerts: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert!(
        alerts.len() >= 7,
        "expected the issue's seven alerts at least"
    );
    for block in alerts {
        let name = block.lines().next().unwrap_or_default().trim();
        assert!(block.contains("summary: "), "{name} has no summary");
        assert!(block.contains("severity: "), "{name} has no severity");
        let url = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook_url: "))
            .unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let anchor = url
            .trim_matches('"')
            .rsplit_once("docs/operations.md#")
            .map(|(_, a)| a)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not into docs/operations.md"));
        assert_eq!(anchor, name.to_ascii_lowercase(), "{name}: anchor");
        assert!(
            headings.contains(anchor),
            "{name}: no '### {name}' in docs/operations.md"
        );
    }
    for needed in [
        "CacheHitRatio",
        "CacheL2ErrorRateHigh",
        "CacheBreakerOpen",
        "CacheLoadErrorRateHigh",
        "CacheLoadLatencyHigh",
        "CacheServingStale",
        "CacheEvictionSpike",
    ] {
        assert!(
            rules.contains(&format!("- alert: {needed}")),
            "missing {needed}"
        );
    }
}

#[test]
fn rules_and_dashboard_name_only_catalogued_metrics() {
    for file in ["observability/alerts.yml", "observability/dashboard.json"] {
        let names = metric_names_in(&read(file));
        assert!(!names.is_empty(), "{file} names no metric");
        let unknown: Vec<_> = names.iter().filter(|n| !catalogued(n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics not in the catalogue: {unknown:?}"
        );
    }
}

#[test]
fn every_catalogued_metric_is_on_the_dashboard_and_in_the_runbook() {
    let dashboard = metric_names_in(&read("observability/dashboard.json"));
    let runbook = read("operations.md");
    for m in CATALOG {
        assert!(
            dashboard.contains(m.name),
            "{} is not on the dashboard",
            m.name
        );
        assert!(
            runbook.contains(&format!("`{}`", m.name)),
            "{} is not in the runbook",
            m.name
        );
    }
}

#[test]
fn dashboard_is_valid_grafana_json() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("observability/dashboard.json")).expect("valid JSON");
    assert_eq!(dash["uid"], "resilient-cache");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut targets = 0;
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} repeats");
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr");
            assert!(
                expr.contains("$cache"),
                "panel {} ignores the cache variable",
                p["title"]
            );
            targets += 1;
        }
    }
    assert!(targets >= CATALOG.len(), "only {targets} queries");
    let vars = dash["templating"]["list"].as_array().expect("variables");
    assert!(vars.iter().any(|v| v["name"] == "cache"));
    assert!(vars.iter().any(|v| v["name"] == "datasource"));
}

#[test]
fn name_scanner_maps_histogram_series_and_skips_recording_rules() {
    let names = metric_names_in(
        "rate(cache_load_duration_seconds_bucket[5m]) cache:hit_ratio:rate5m x_cache_y cache_loads_total",
    );
    let expected: BTreeSet<String> = ["cache_load_duration_seconds", "cache_loads_total"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, expected);
}
