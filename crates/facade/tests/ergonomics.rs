//! The types users bring: loader errors of any kind (anyhow, boxed), and their
//! own key types through `#[derive(CacheKey)]`.

use std::time::Duration;

use cache_testkit::{RedisServer, eventually_async};
use resilient_cache::{Cache, CacheKey, DecodeKey, Error};

#[tokio::test]
async fn an_anyhow_loader_error_comes_back_with_its_message() {
    let cache: Cache<u64, String> = Cache::builder("anyhow").build().expect("valid config");
    let failed = cache
        .try_get_or_load(1, |id| async move {
            Err::<Option<String>, anyhow::Error>(anyhow::anyhow!("no row {id}"))
        })
        .await
        .expect_err("the loader failed");
    assert!(matches!(failed, Error::Load(_)));
    assert_eq!(failed.to_string(), "loader failed: no row 1");
}

#[tokio::test]
async fn a_boxed_loader_error_comes_back_too() {
    let cache: Cache<u64, String> = Cache::builder("boxed").build().expect("valid config");
    let failed = cache
        .try_get_or_load(2, |_| async {
            let e: Box<dyn std::error::Error + Send + Sync> = "the source said no".into();
            Err::<Option<String>, _>(e)
        })
        .await
        .expect_err("the loader failed");
    assert_eq!(failed.to_string(), "loader failed: the source said no");
}

#[derive(CacheKey, Debug, Clone, PartialEq, Eq, Hash)]
struct UserId(u64);

#[derive(CacheKey, Debug, Clone, PartialEq, Eq, Hash)]
struct OrgUser {
    org: String,
    user: u64,
}

#[test]
fn derived_keys_encode_like_their_fields_and_decode_back() {
    assert_eq!(UserId(7).to_key_string(), "7");
    assert_eq!(UserId::decode_key("7"), Some(UserId(7)));
    assert_eq!(UserId::decode_key("seven"), None);
    let k = OrgUser {
        org: "acme:eu".into(),
        user: 9,
    };
    assert_eq!(k.to_key_string(), ("acme:eu", 9u64).to_key_string());
    assert_eq!(OrgUser::decode_key(&k.to_key_string()), Some(k));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_keys_work_through_redis_and_the_bus() {
    let server = RedisServer::start().expect("redis-server");
    let instance = || {
        Cache::builder("orgs")
            .default_ttl(Duration::from_secs(60))
            .redis_url(server.url())
            .build::<OrgUser, String>()
            .expect("valid config")
    };
    let (a, b) = (instance(), instance());
    let key = OrgUser {
        org: "acme".into(),
        user: 1,
    };
    a.set(key.clone(), "Ada".into()).await.expect("set");
    assert_eq!(b.get(&key).await.expect("ok").as_deref(), Some("Ada"));
    // A removal on A reaches B's L1: the bus message decodes back into the key.
    a.remove(&key).await.expect("remove");
    eventually_async("B dropped the key", || {
        let (b, key) = (b.clone(), key.clone());
        async move { !b.contains_key(&key) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis_works_end_to_end_and_the_password_stays_hidden() {
    let server = RedisServer::start_with_args(&["--requirepass", "s3cret"]).expect("redis-server");
    let instance = || {
        Cache::builder("secured")
            .redis_url(server.url())
            .build::<u64, String>()
            .expect("valid config")
    };
    let (a, b) = (instance(), instance());
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
    let report = serde_json::to_string(&a.health().await).expect("json");
    assert!(!report.contains("s3cret"), "{report}");
    assert!(!format!("{:?}", a.tiered().l2()).contains("s3cret"));
}
