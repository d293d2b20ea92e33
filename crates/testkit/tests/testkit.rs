//! The test kit proves itself against real processes and a real client.

use std::time::{Duration, Instant};

use cache_testkit::{Fault, FaultProxy, RedisCluster, RedisServer, Reply};
use redis::AsyncCommands;

/// A client with a generous response timeout, so the proxy's faults (not the
/// client's own 500 ms default) decide what the test observes.
async fn client(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    redis::Client::open(url)
        .expect("valid url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connects")
}

#[tokio::test]
async fn server_starts_answers_and_survives_kill_and_restart() {
    let mut server = RedisServer::start().expect("redis-server starts");
    let port = server.port();
    let mut c = client(&server.url()).await;
    let pong: String = redis::cmd("PING").query_async(&mut c).await.expect("ping");
    assert_eq!(pong, "PONG");
    let _: () = c.set("k", "v").await.expect("set");

    server.kill();
    assert!(!server.is_running());
    assert!(server.ping().is_err(), "a killed server must not answer");
    let down: redis::RedisResult<String> = c.get("k").await;
    assert!(down.is_err(), "the client sees the outage");

    server.restart().expect("restarts");
    assert_eq!(server.port(), port, "same port after restart");
    let mut c = client(&server.url()).await;
    let v: Option<String> = c.get("k").await.expect("get");
    assert_eq!(v, None, "no persistence: data is gone after a crash");
}

#[test]
fn servers_get_distinct_ports_and_raw_commands_work() {
    let a = RedisServer::start().expect("a");
    let b = RedisServer::start().expect("b");
    assert_ne!(a.port(), b.port());
    let mut conn = a.connect().expect("connect");
    conn.command(&[b"SET", b"raw", b"\xff\x00bytes"])
        .expect("set");
    assert_eq!(
        conn.command(&[b"GET", b"raw"]).expect("get"),
        Reply::Bulk(Some(b"\xff\x00bytes".to_vec()))
    );
    assert!(matches!(
        conn.command(&[b"NOSUCHCMD"]).expect("reply"),
        Reply::Error(_)
    ));
    assert!(conn.cmd(&["NOSUCHCMD"]).is_err());
}

#[tokio::test]
async fn cluster_is_ok_and_routes_keys_across_masters() {
    let cluster = RedisCluster::start().expect("cluster starts");
    assert_eq!(cluster.nodes().len(), 3);
    let info = cluster.info().expect("info");
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    assert!(info.contains("cluster_known_nodes:3"), "{info}");

    let client = redis::cluster::ClusterClient::new(cluster.urls()).expect("client");
    let mut c = client.get_async_connection().await.expect("connects");
    for i in 0..50 {
        let _: () = c.set(format!("key-{i}"), i).await.expect("set");
    }
    for i in 0..50 {
        let v: i32 = c.get(format!("key-{i}")).await.expect("get");
        assert_eq!(v, i);
    }
    // The keys really are spread over more than one master.
    let mut holders = 0;
    for node in cluster.nodes() {
        let mut raw = node.connect().expect("raw");
        if let Reply::Int(n) = raw.cmd(&["DBSIZE"]).expect("dbsize") {
            holders += usize::from(n > 0);
        }
    }
    assert!(holders >= 2, "keys landed on {holders} node(s)");
}

#[tokio::test]
async fn proxy_forwards_then_adds_latency() {
    let server = RedisServer::start().expect("server");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let mut c = client(&proxy.url()).await;
    let _: () = c.set("k", "v").await.expect("set through proxy");
    assert_eq!(proxy.connections_accepted(), 1);

    proxy.set_latency(Duration::from_millis(300));
    assert_eq!(proxy.fault(), Fault::Latency(Duration::from_millis(300)));
    let t = Instant::now();
    let v: String = c.get("k").await.expect("slow get");
    let took = t.elapsed();
    assert_eq!(v, "v");
    // Request and reply are each delayed: at least 2 × 300 ms.
    assert!(took >= Duration::from_millis(600), "took {took:?}");

    proxy.heal();
    let v: String = c.get("k").await.expect("fast get");
    assert_eq!(v, "v");
}

#[tokio::test]
async fn proxy_black_hole_and_heal() {
    let server = RedisServer::start().expect("server");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let mut c = client(&proxy.url()).await;
    proxy.black_hole();
    let r = tokio::time::timeout(Duration::from_millis(500), c.get::<_, Option<String>>("k")).await;
    assert!(r.is_err(), "a black-holed request never gets an answer");
    proxy.heal();
    // The swallowed request leaves that connection out of step; a new one works.
    let mut c = client(&proxy.url()).await;
    let v: Option<String> = c.get("k").await.expect("healed");
    assert_eq!(v, None);
}

#[tokio::test]
async fn proxy_refuses_and_cuts() {
    let server = RedisServer::start().expect("server");
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let mut c = client(&proxy.url()).await;
    let _: () = c.set("k", "1").await.expect("set");

    proxy.cut_connections();
    let r: redis::RedisResult<String> = c.get("k").await;
    assert!(r.is_err(), "a cut connection fails");

    proxy.refuse();
    let refused = redis::Client::open(proxy.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await;
    let failed = match refused {
        Err(_) => true,
        Ok(mut c) => c.get::<_, String>("k").await.is_err(),
    };
    assert!(failed, "a refused connection cannot be used");

    proxy.heal();
    let mut c = client(&proxy.url()).await;
    let v: String = c.get("k").await.expect("works again");
    assert_eq!(v, "1");
}

#[tokio::test]
async fn a_server_with_requirepass_starts_and_its_url_authenticates() {
    let mut server = RedisServer::start_with_args(&["--requirepass", "s3cret"])
        .expect("starts: readiness authenticates");
    assert!(server.url().contains(":s3cret@"), "{}", server.url());
    // The testkit's own raw connection authenticates; an anonymous one is refused.
    assert!(server.ping().is_ok());
    let mut anonymous = cache_testkit::RawConnection::connect(server.addr()).expect("tcp");
    let refused = anonymous.cmd(&["PING"]).expect_err("no AUTH, no PONG");
    assert!(refused.to_string().contains("NOAUTH"), "{refused}");
    // A real client with the URL works; without the password it does not.
    let mut c = client(&server.url()).await;
    let _: () = c.set("k", "v").await.expect("authenticated");
    let anon = redis::Client::open(server.url_without_password())
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await;
    if let Ok(mut anon) = anon {
        assert!(anon.get::<_, Option<String>>("k").await.is_err());
    }
    // The password survives a restart.
    server.kill();
    server.restart().expect("restarts and authenticates");
    assert!(server.ping().is_ok());
}
