//! Caches configured from a TOML file and from variables, checked by the
//! builder: two caches from one file (one over a real Redis), readable errors
//! that name the field, and secrets kept out of them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cache_testkit::RedisServer;
use resilient_cache::Cache;
use resilient_cache::config::{CacheConfig, parse_duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_configures_two_caches() {
    let server = RedisServer::start().expect("redis-server");
    let file = format!(
        r#"
        [users]
        max_entries = 1_000
        default_ttl = "5m"
        negative_ttl = "0s"
        stale_window = "1h"
        jitter = "none"
        load_hard_timeout = "2s"
        op_timeout = "2s"
        fail_mode = "closed"
        gap_policy = "20s"
        breaker = {{ failure_rate = 0.5, window = "2s", minimum_calls = 10, wait_in_open = "500ms" }}
        fleet_flight = {{ lease_ttl = "3s", wait = "5s" }}
        redis = {{ url = "{url}" }}

        [sessions]
        default_ttl = "30m"
        time_to_idle = "5m"
        jitter = "below 10%"
        refresh_ahead = {{ threshold = 0.2 }}
        "#,
        url = server.url()
    );
    let caches: BTreeMap<String, CacheConfig> = toml::from_str(&file).expect("valid TOML");
    let users: Cache<u64, String> = caches["users"]
        .builder("users")
        .expect("options")
        .build()
        .expect("valid config");
    let sessions: Cache<String, Vec<u8>> = caches["sessions"]
        .builder("sessions")
        .expect("options")
        .build()
        .expect("valid config");
    users.set(1, "Ada".into()).await.expect("set");
    assert!(users.tiered().l2().is_some(), "users has Redis");
    assert_eq!(
        users.tiered().fail_mode(),
        resilient_cache::FailMode::Closed
    );
    let left = users.time_to_live(&1).await.expect("ok").expect("stored");
    assert!(
        left > Duration::from_secs(290) && left <= Duration::from_secs(300),
        "{left:?}"
    );
    assert!(sessions.tiered().l2().is_none(), "sessions is L1 only");
    assert_eq!(
        sessions.tiered().l1().time_to_idle(),
        Some(Duration::from_secs(300))
    );
}

fn build(toml_text: &str) -> Result<Cache<u64, String>, String> {
    let config: CacheConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    let builder = config.builder("checked").map_err(|e| e.to_string())?;
    builder.build().map_err(|e| e.to_string())
}

#[test]
fn mistakes_fail_naming_the_field() {
    for (text, field) in [
        (r#"fail_mode = "sideways""#, "fail_mode"),
        (r#"default_ttl = "0s""#, "default_ttl"),
        (r#"jitter = "150%""#, "jitter"),
        (r#"gap_policy = "sometimes""#, "gap_policy"),
        (r#"max_entries = 0"#, "max_entries"),
        (r#"refresh_ahead = { xfetch = -1.0 }"#, "refresh_ahead"),
        (
            r#"load_soft_timeout = "3s"
            load_hard_timeout = "2s""#,
            "load_soft_timeout",
        ),
        (
            r#"redis = { url = "redis://a", cluster = ["redis://b"] }"#,
            "redis",
        ),
    ] {
        let err = build(text).map(drop).expect_err(text);
        assert!(err.contains(field), "{text}: {err}");
    }
    let typo = build(r#"defualt_ttl = "5m""#)
        .map(drop)
        .expect_err("unknown field");
    assert!(typo.contains("defualt_ttl"), "{typo}");
    let unit = build(r#"default_ttl = "5 parsecs""#)
        .map(drop)
        .expect_err("unit");
    assert!(unit.contains("unknown unit"), "{unit}");
    assert_eq!(
        parse_duration("1d2h3m4s5ms"),
        Ok(Duration::from_millis(93_784_005))
    );
}

#[test]
fn variables_override_and_never_echo_values() {
    let vars: HashMap<&str, &str> = [
        ("USERS_CACHE_DEFAULT_TTL", "45s"),
        ("USERS_CACHE_MAX_ENTRIES", "2_000"),
        ("USERS_CACHE_FAIL_MODE", "closed"),
        ("USERS_CACHE_INVALIDATION_BUS", "off"),
        ("USERS_CACHE_REDIS_URL", "redis://127.0.0.1:6399"),
        ("USERS_CACHE_REDIS_PASSWORD", "vault-s3cret"),
        ("OTHER_DEFAULT_TTL", "1s"),
    ]
    .into_iter()
    .collect();
    let lookup = |name: &str| vars.get(name).map(|v| (*v).to_owned());
    let base: CacheConfig = toml::from_str(r#"stale_window = "10m""#).expect("toml");
    let config = base.with_vars("USERS_CACHE_", lookup).expect("parses");
    assert_eq!(
        config.default_ttl.map(|d| d.0),
        Some(Duration::from_secs(45))
    );
    assert_eq!(
        config.stale_window.map(|d| d.0),
        Some(Duration::from_secs(600))
    );
    assert_eq!(config.max_entries, Some(2_000));
    assert_eq!(config.invalidation_bus, Some(false));
    let redis = config.redis.as_ref().expect("redis");
    assert_eq!(redis.password.as_deref(), Some("vault-s3cret"));
    let cache: Cache<u64, String> = config
        .builder("users")
        .expect("options")
        .build()
        .expect("valid config");
    assert_eq!(
        cache.tiered().fail_mode(),
        resilient_cache::FailMode::Closed
    );

    let bad: HashMap<&str, &str> = [("X_OP_TIMEOUT", "soon-s3cret")].into_iter().collect();
    let err = CacheConfig::default()
        .with_vars("X_", |n| bad.get(n).map(|v| (*v).to_owned()))
        .expect_err("does not parse");
    let text = err.to_string();
    assert!(text.contains("X_OP_TIMEOUT"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    let shown = format!("{config:?}");
    assert!(
        shown.contains("USERS") || shown.contains("redis://127.0.0.1:6399"),
        "{shown}"
    );
    assert!(
        !shown.contains("vault-s3cret"),
        "Debug hides the password: {shown}"
    );
}
