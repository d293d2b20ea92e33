//! Replies that prove Redis is alive are no outage: `OOM` turns writes off and
//! leaves reads on, a value of another type is a miss plus a delete, and
//! refused credentials or permissions have their own error kind — none of them
//! opens the breaker.

use std::time::Duration;

use cache_breaker::State;
use cache_core::{Clock, Entry, ErrorKind, Store, SystemClock};
use cache_store_memory::MemoryStore;
use cache_store_redis::RedisStore;
use cache_testkit::{RedisServer, Reply, eventually};
use cache_tiered::{FailMode, TieredStore};

type Tiered = TieredStore<String, u32>;

fn l1() -> MemoryStore<String, u32> {
    MemoryStore::builder()
        .max_entries(1_000)
        .build()
        .expect("l1")
}

fn tiered(url: String, mode: FailMode) -> Tiered {
    let l2 = RedisStore::builder()
        .url(url)
        .namespace("refusals")
        // Generous: these tests count refusals and errors, and a timeout on a
        // busy machine would be an error they are not about.
        .op_timeout(Duration::from_secs(2))
        .build()
        .expect("l2");
    TieredStore::builder(l1())
        .l2(l2)
        .fail_mode(mode)
        .invalidation_bus(false)
        .build()
        .expect("build")
}

fn entry(v: u32) -> Entry<u32> {
    Entry::new(v, SystemClock.now(), Duration::from_secs(60))
}

fn breaker_state(store: &Tiered) -> State {
    store.breaker().expect("breaker").state()
}

#[tokio::test]
async fn out_of_memory_turns_writes_off_and_leaves_reads_on() {
    let server =
        RedisServer::start_with_args(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"])
            .expect("redis");
    let store = tiered(server.url(), FailMode::Open);
    for i in 0..10 {
        store.put(format!("kept{i}"), entry(i)).await.expect("put");
    }
    // Fill Redis up behind the cache's back until it refuses writes.
    let mut raw = server.connect().expect("raw");
    // Small values, so the last one accepted leaves Redis over its limit.
    let blob = "x".repeat(1024);
    let mut full = false;
    for i in 0..20_000 {
        let key = format!("filler{i}");
        match raw.command(&[b"SET", key.as_bytes(), blob.as_bytes()]) {
            Ok(Reply::Error(e)) => {
                assert!(e.starts_with("OOM"), "{e}");
                full = true;
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("raw SET: {e}"),
        }
    }
    assert!(full, "Redis never reached maxmemory");
    // Well under what it holds now, so memory that comes and goes (client
    // buffers, a new connection) cannot bring it back under the limit.
    assert_eq!(
        raw.cmd(&["CONFIG", "SET", "maxmemory", "1mb"])
            .expect("config"),
        Reply::Status("OK".into())
    );

    for i in 0..20 {
        store
            .put(format!("new{i}"), entry(i))
            .await
            .expect("fail-open: a refused write is absorbed");
    }
    // Refused writes go through the recovery queue once more and are dropped
    // (counted) when Redis refuses them again.
    eventually("the refused writes are settled", || {
        store.recovery_pending() == 0
    })
    .await;
    let stats = store.stats();
    assert!(stats.l2_refused >= 1, "{stats:?}");
    assert!(stats.recovery_dropped >= 1, "{stats:?}");
    assert_eq!(stats.l2_errors, 0, "no outage: {stats:?}");
    assert_eq!(breaker_state(&store), State::Closed);

    store.l1().clear();
    for i in 0..10 {
        let got = store.get(&format!("kept{i}")).await.expect("get");
        assert_eq!(got.and_then(Entry::into_value), Some(i), "read from L2");
    }
    assert_eq!(store.stats().l2_hits, 10);

    let closed = tiered(server.url(), FailMode::Closed);
    let err = closed
        .put("refused".into(), entry(1))
        .await
        .expect_err("fail-closed reports it");
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert_eq!(breaker_state(&closed), State::Closed);
}

#[tokio::test]
async fn a_value_of_another_type_is_a_miss_and_is_deleted() {
    let server = RedisServer::start().expect("redis");
    let store = tiered(server.url(), FailMode::Open);
    let full = store
        .l2()
        .expect("l2")
        .redis_key(&"listy".to_owned())
        .expect("key");
    let mut raw = server.connect().expect("raw");
    raw.cmd(&["LPUSH", &full, "a", "b"]).expect("lpush");
    for _ in 0..10 {
        assert!(store.get(&"listy".to_owned()).await.expect("get").is_none());
        raw.cmd(&["LPUSH", &full, "again"]).expect("lpush");
    }
    assert_eq!(breaker_state(&store), State::Closed);
    assert!(store.l2().expect("l2").stats().decode_errors >= 10);
    store.put("listy".into(), entry(5)).await.expect("put");
    store.l1().clear();
    let got = store.get(&"listy".to_owned()).await.expect("get");
    assert_eq!(
        got.and_then(Entry::into_value),
        Some(5),
        "a valid key reads again"
    );
}

#[tokio::test]
async fn refused_credentials_and_permissions_are_denied_not_an_outage() {
    let server = RedisServer::start().expect("redis");
    let mut raw = server.connect().expect("raw");
    raw.cmd(&["ACL", "SETUSER", "app", "on", ">right", "~*", "&*", "+@all"])
        .expect("acl");
    raw.cmd(&[
        "ACL", "SETUSER", "reader", "on", ">pw", "~*", "&*", "+@all", "-set",
    ])
    .expect("acl");

    let wrong = RedisStore::builder()
        .url(format!("redis://app:wrong@{}", server.addr()))
        .build()
        .expect("config");
    let err = wrong.ping().await.expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    assert!(
        !err.to_string().contains("wrong@"),
        "no URL in the error: {err}"
    );

    let locked = tiered(
        format!("redis://app:wrong@{}", server.addr()),
        FailMode::Open,
    );
    for i in 0..10 {
        let _ = locked.get(&format!("k{i}")).await.expect("fail-open");
    }
    assert_eq!(
        breaker_state(&locked),
        State::Closed,
        "{:?}",
        locked.stats()
    );
    assert!(locked.stats().l2_refused >= 1);

    let reader = tiered(
        format!("redis://reader:pw@{}", server.addr()),
        FailMode::Closed,
    );
    let err = reader
        .put("k".into(), entry(1))
        .await
        .expect_err("SET is not allowed");
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    assert!(reader.get(&"k".to_owned()).await.expect("GET is").is_none());
    assert_eq!(breaker_state(&reader), State::Closed);
}
