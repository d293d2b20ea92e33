//! The facade over TLS with mutual authentication: two instances share L2 and
//! the bus through a real `redis-server --tls-port --tls-auth-clients yes`.
#![cfg(feature = "tls")]

use std::time::Duration;

use cache_testkit::{RedisServer, TestPki, TlsServer, eventually_async};
use resilient_cache::{Cache, HealthStatus, TlsOptions, TlsRoots};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_l2_and_the_bus_over_mutual_tls() {
    let pki = TestPki::generate().expect("test certificates");
    let server = RedisServer::start_tls(
        &pki,
        TlsServer {
            auth_clients: true,
            ..TlsServer::default()
        },
    )
    .expect("tls server");
    let instance = || -> Cache<u64, String> {
        Cache::builder("tls")
            .redis_url(server.tls_url())
            .redis_tls(
                TlsOptions::new()
                    .ca_pem(pki.ca_pem())
                    .roots(TlsRoots::GivenOnly)
                    .client_cert_pem(pki.client_cert_pem(), pki.client_key_pem()),
            )
            .op_timeout(Duration::from_secs(2))
            .build()
            .expect("valid config")
    };
    let (a, b) = (instance(), instance());
    a.set(1, "one".into()).await.expect("set over TLS");
    assert_eq!(
        b.get(&1).await.expect("ok").as_deref(),
        Some("one"),
        "through L2"
    );
    a.remove(&1).await.expect("remove");
    eventually_async("the bus reached B over TLS", || {
        let b = b.clone();
        async move { !b.contains_key(&1) }
    })
    .await;
    assert_eq!(a.health().await.status, HealthStatus::Healthy);

    // Without the client certificate the same server refuses: health says so.
    let anonymous: Cache<u64, String> = Cache::builder("tls")
        .redis_url(server.tls_url())
        .redis_tls(TlsOptions::new().ca_pem(pki.ca_pem()))
        .build()
        .expect("valid config");
    assert_ne!(anonymous.health().await.status, HealthStatus::Healthy);
    // A bad CA file fails the build, naming the field.
    let err = Cache::builder("tls")
        .redis_url(server.tls_url())
        .redis_tls(TlsOptions::new().ca_pem_file("/nonexistent/ca.pem"))
        .build::<u64, String>()
        .expect_err("unreadable CA");
    assert_eq!(err.field(), "tls");
}
