//! Credentials against a real Redis with `requirepass` and ACL users: they work
//! from the URL or set apart from it; a user refused the bus stream makes health
//! degraded and says why; and no password appears in any `Debug`, `Display`,
//! error, log line, health report or metric.
#![cfg(all(feature = "tracing", feature = "prometheus"))]

mod common;

use std::time::Duration;

use cache_testkit::{RedisServer, Reply, eventually, eventually_async};
use common::capture::Capture;
use resilient_cache::{Cache, FailMode, HealthStatus, LoadOptions, PrometheusExporter};

const SECRETS: [&str; 4] = ["admin-s3cret", "app-s3cret", "nobus-s3cret", "wrong-s3cret"];

fn acl(server: &RedisServer, args: &[&str]) {
    let mut raw = server.connect().expect("raw");
    let mut cmd = vec!["ACL", "SETUSER"];
    cmd.extend_from_slice(args);
    assert_eq!(
        raw.cmd(&cmd).expect("acl"),
        Reply::Status("OK".into()),
        "{args:?}"
    );
}

fn user(server: &RedisServer, name: &str, user: &str, password: &str) -> Cache<u64, String> {
    Cache::builder(name)
        .redis_url(server.url_without_password())
        .redis_username(user)
        .redis_password(password)
        .op_timeout(Duration::from_secs(2))
        .build()
        .expect("valid config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_work_and_never_show() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).expect("the only subscriber");
    let exporter = PrometheusExporter::install().expect("recorder");
    let server =
        RedisServer::start_with_args(&["--requirepass", "admin-s3cret"]).expect("redis-server");
    // The permissions the docs list ("Connecting securely"), and no more.
    acl(
        &server,
        &[
            "app",
            "on",
            ">app-s3cret",
            "~cache:acl*",
            "~{cache:acl*",
            "resetchannels",
            "+@read",
            "+@write",
            "+@scripting",
            "+xadd",
            "+xread",
            "+xinfo",
            "+xrevrange",
            "+info",
            "+ping",
        ],
    );
    // Entries and leases of its own cache, but not its bus stream or epoch.
    acl(
        &server,
        &[
            "nobus",
            "on",
            ">nobus-s3cret",
            "~cache:nobus:*",
            "~{cache:nobus:*",
            "+@all",
        ],
    );
    let mut seen: Vec<String> = Vec::new();

    // An ACL user, credentials apart from the URL: both tiers and the bus work.
    let (a, b) = (
        user(&server, "acl", "app", "app-s3cret"),
        user(&server, "acl", "app", "app-s3cret"),
    );
    a.set(1, "one".into()).await.expect("set");
    assert_eq!(
        b.get(&1).await.expect("ok").as_deref(),
        Some("one"),
        "through L2"
    );
    a.remove(&1).await.expect("remove");
    eventually_async("the bus reached B", || {
        let b = b.clone();
        async move { !b.contains_key(&1) }
    })
    .await;
    // `requirepass` in the URL still works.
    let admin: Cache<u64, String> = Cache::builder("admin")
        .redis_url(server.url())
        .build()
        .expect("valid config");
    admin.set(2, "two".into()).await.expect("set");

    // A user refused the bus stream: values still flow, health says why.
    let nobus = user(&server, "nobus", "nobus", "nobus-s3cret");
    nobus
        .set(3, "three".into())
        .await
        .expect("entries are allowed");
    eventually_async("health names the ACL problem", || {
        let nobus = nobus.clone();
        async move {
            let h = nobus.health().await;
            h.status == HealthStatus::Degraded
                && h.l2
                    .is_some_and(|l2| l2.reasons.iter().any(|r| r.contains("ACL")))
        }
    })
    .await;
    let report = nobus.health().await;
    assert!(
        format!("{report:?}").contains("cache:nobus#bus"),
        "the stream key is named: {report:?}"
    );

    // A wrong password: a typed error naming the problem, never the password.
    let wrong = user(&server, "wrong", "app", "wrong-s3cret");
    let strict = LoadOptions::new().fail_mode(FailMode::Closed);
    let err = wrong
        .get_or_load_with(4, &strict, |_| async { Some("x".to_owned()) })
        .await
        .expect_err("refused");
    seen.push(err.to_string());
    seen.push(format!("{err:?}"));
    eventually("the refused connect is logged", || {
        capture.saw("cannot connect to Redis")
    })
    .await;

    for cache in [&a, &admin, &nobus, &wrong] {
        let health = cache.health().await;
        seen.push(serde_json::to_string(&health).expect("json"));
        seen.push(format!("{health:?}"));
        seen.push(format!("{:?}", cache.tiered()));
        seen.push(format!("{:?}", cache.tiered().l2()));
        seen.push(format!("{:?}", cache.stats()));
    }
    seen.push(exporter.render());
    seen.extend(capture.lines());
    for text in &seen {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    assert!(seen.len() > 20, "something was checked");
}
