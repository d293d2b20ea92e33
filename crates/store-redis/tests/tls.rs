//! TLS against real `redis-server --tls-port` processes with certificates made
//! at test time: a private CA (alone or with the built-in roots), a server name
//! override, mutual TLS, a cluster over TLS, the bus over TLS — and the
//! refusals: another CA, a wrong host name, a self-signed server, a missing
//! client certificate.
#![cfg(feature = "tls")]

use std::time::Duration;

use cache_core::{CacheError, Clock, Entry, Store, SystemClock};
use cache_store_redis::{Action, BusEvent, RedisStore, RedisStoreBuilder, TlsOptions, TlsRoots};
use cache_testkit::{RedisCluster, RedisServer, TestPki, TlsServer};

fn pki() -> TestPki {
    TestPki::generate().expect("test certificates")
}

fn builder(url: String) -> RedisStoreBuilder {
    RedisStore::builder()
        .url(url)
        .namespace("tls")
        .connect_timeout(Duration::from_millis(1000))
        .op_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(10))
}

fn only(pki: &TestPki) -> TlsOptions {
    TlsOptions::new()
        .ca_pem(pki.ca_pem())
        .roots(TlsRoots::GivenOnly)
}

fn entry(v: u32) -> Entry<u32> {
    Entry::new(v, SystemClock.now(), Duration::from_secs(60))
}

/// A round trip through the store, or the error that stopped it.
async fn round_trip(store: &RedisStore) -> Result<Option<u32>, CacheError> {
    store.put("k".to_owned(), entry(7)).await?;
    let got: Option<Entry<u32>> = Store::<String, u32>::get(store, &"k".to_owned()).await?;
    Ok(got.and_then(Entry::into_value))
}

fn assert_tls_refusal(result: Result<Option<u32>, CacheError>, what: &str) {
    let err = result.expect_err(what);
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("tls") || text.contains("handshake"),
        "{what}: {err}"
    );
}

#[tokio::test]
async fn a_private_ca_is_trusted_alone_or_with_the_built_in_roots() {
    let pki = pki();
    let server = RedisServer::start_tls(&pki, TlsServer::default()).expect("tls server");
    let alone = builder(server.tls_url())
        .tls(only(&pki))
        .build()
        .expect("build");
    assert_eq!(round_trip(&alone).await.expect("round trip"), Some(7));
    let with_roots = builder(server.tls_url())
        .tls(TlsOptions::new().ca_pem(pki.ca_pem()))
        .build()
        .expect("build");
    assert_eq!(round_trip(&with_roots).await.expect("round trip"), Some(7));
    let from_file = builder(server.tls_url())
        .tls(
            TlsOptions::new()
                .ca_pem_file(pki.ca_file())
                .roots(TlsRoots::GivenOnly),
        )
        .build()
        .expect("build");
    assert_eq!(round_trip(&from_file).await.expect("round trip"), Some(7));

    // The bus over TLS.
    let mut sub = alone.bus().subscribe().await;
    assert!(sub.is_connected(), "the bus connected over TLS");
    with_roots
        .bus()
        .publish(Action::Tag("t".into()))
        .await
        .expect("publish over TLS");
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("in time");
    assert!(matches!(event, Some(BusEvent::Message(m)) if m.action == Action::Tag("t".into())));
}

#[tokio::test]
async fn another_ca_a_wrong_name_and_a_self_signed_server_are_refused() {
    let pki = pki();
    let server = RedisServer::start_tls(&pki, TlsServer::default()).expect("tls server");
    let port = server.tls_port().expect("tls port");

    let other_ca = builder(server.tls_url())
        .tls(
            TlsOptions::new()
                .ca_pem(pki.other_ca_pem())
                .roots(TlsRoots::GivenOnly),
        )
        .build()
        .expect("build");
    assert_tls_refusal(round_trip(&other_ca).await, "a CA that signed nothing here");
    let built_in_only = builder(server.tls_url()).build().expect("build");
    assert_tls_refusal(round_trip(&built_in_only).await, "the built-in roots alone");

    // The name checked is the server name, not the URL's host (which is still
    // where the connection goes).
    let wrong_name = builder(format!("rediss://127.0.0.1:{port}"))
        .tls(only(&pki).server_name("cache.wrong.example"))
        .build()
        .expect("build");
    assert_tls_refusal(
        round_trip(&wrong_name).await,
        "a name the certificate lacks",
    );
    let right_name = builder(format!("rediss://127.0.0.1:{port}"))
        .tls(only(&pki).server_name("localhost"))
        .build()
        .expect("build");
    assert_eq!(round_trip(&right_name).await.expect("round trip"), Some(7));
    let mut sub = right_name.bus().subscribe().await;
    assert!(sub.is_connected(), "the bus uses the server name too");
    drop(sub.try_recv());

    let self_signed = RedisServer::start_tls(
        &pki,
        TlsServer {
            self_signed: true,
            ..TlsServer::default()
        },
    )
    .expect("tls server");
    let store = builder(self_signed.tls_url())
        .tls(only(&pki))
        .build()
        .expect("build");
    assert_tls_refusal(round_trip(&store).await, "a self-signed server");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let pki = pki();
    let server = RedisServer::start_tls(
        &pki,
        TlsServer {
            auth_clients: true,
            ..TlsServer::default()
        },
    )
    .expect("tls server");
    let anonymous = builder(server.tls_url())
        .tls(only(&pki))
        .build()
        .expect("build");
    assert!(
        round_trip(&anonymous).await.is_err(),
        "no client certificate: refused"
    );
    let mutual = builder(server.tls_url())
        .tls(only(&pki).client_cert_pem(pki.client_cert_pem(), pki.client_key_pem()))
        .build()
        .expect("build");
    assert_eq!(round_trip(&mutual).await.expect("round trip"), Some(7));
    let mut sub = mutual.bus().subscribe().await;
    assert!(
        sub.is_connected(),
        "the bus presents the client certificate too"
    );
    drop(sub.try_recv());
}

#[tokio::test]
async fn a_cluster_over_tls_spreads_keys_and_carries_the_bus() {
    let pki = pki();
    let cluster = RedisCluster::start_tls(&pki).expect("tls cluster");
    let store = RedisStore::builder()
        .cluster(cluster.tls_urls())
        .namespace("tls")
        .op_timeout(Duration::from_secs(5))
        .tls(only(&pki))
        .build()
        .expect("build");
    let entries: Vec<(u32, Entry<u32>)> = (0..200).map(|i| (i, entry(i))).collect();
    store
        .put_many(entries)
        .await
        .expect("put_many across slots");
    let keys: Vec<u32> = (0..200).collect();
    let got = Store::<u32, u32>::get_many(&store, &keys)
        .await
        .expect("get_many");
    assert!(got.iter().all(Option::is_some));
    let health = Store::<u32, u32>::health(&store).await;
    assert_eq!(
        health.status,
        cache_core::HealthStatus::Healthy,
        "{health:?}"
    );

    let mut sub = store.bus().subscribe().await;
    assert!(sub.is_connected());
    let other = RedisStore::builder()
        .cluster(cluster.tls_urls())
        .namespace("tls")
        .tls(only(&pki))
        .build()
        .expect("build");
    other
        .bus()
        .publish(Action::Prefix("p".into()))
        .await
        .expect("publish");
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("in time");
    assert!(matches!(event, Some(BusEvent::Message(m)) if m.action == Action::Prefix("p".into())));
}

#[test]
fn contradictions_fail_at_build() {
    let pki = pki();
    let insecure = RedisStore::builder()
        .url("rediss://localhost:6380/#insecure")
        .build()
        .expect_err("no insecure mode");
    assert!(insecure.to_string().contains("#insecure"), "{insecure}");
    let plain = RedisStore::builder()
        .url("redis://localhost:6379")
        .tls(only(&pki))
        .build()
        .expect_err("TLS options on a plain URL");
    assert_eq!(plain.field(), "tls");
    let cluster_name = RedisStore::builder()
        .cluster(["rediss://localhost:7000"])
        .tls(only(&pki).server_name("redis.internal"))
        .build()
        .expect_err("a server name for a cluster");
    assert_eq!(cluster_name.field(), "tls");
    let no_ca = RedisStore::builder()
        .url("rediss://localhost:6380")
        .tls(TlsOptions::new().roots(TlsRoots::GivenOnly))
        .build()
        .expect_err("GivenOnly without a CA");
    assert_eq!(no_ca.field(), "tls");
}
