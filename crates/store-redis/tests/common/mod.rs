//! The behaviour suite shared by the standalone and the cluster tests.
//!
//! Each check takes a [`Fixture`]: a store under test plus a raw client that works
//! behind the store's back (to plant corrupt bytes, read TTLs, count keys).

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use cache_core::{CacheError, Clock, Entry, ErrorKind, Store, SystemClock, Timestamp};
use cache_store_redis::{RedisStore, RedisStoreBuilder};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue};

/// A generous op timeout for bulk work on a shared, noisy machine: the suite checks
/// behaviour, not speed.
pub const BULK_TIMEOUT: Duration = Duration::from_secs(10);

/// A raw client (standalone or cluster) with a long response timeout.
pub enum Raw {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection, Vec<String>),
}

impl Raw {
    pub async fn standalone(url: &str) -> Raw {
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let conn = redis::Client::open(url)
            .expect("url")
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("raw client connects");
        Raw::Single(conn)
    }

    pub async fn cluster(urls: Vec<String>) -> Raw {
        let conn = redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
            .response_timeout(Duration::from_secs(10))
            .build()
            .expect("cluster client")
            .get_async_connection()
            .await
            .expect("raw cluster client connects");
        Raw::Cluster(conn, urls)
    }

    pub async fn q<T: FromRedisValue>(&mut self, cmd: &Cmd) -> T {
        let result = match self {
            Raw::Single(c) => cmd.query_async(c).await,
            Raw::Cluster(c, _) => cmd.query_async(c).await,
        };
        result.expect("raw command")
    }

    /// Number of keys on the whole deployment (every node of a cluster).
    pub async fn dbsize(&mut self) -> u64 {
        match self {
            Raw::Single(c) => redis::cmd("DBSIZE").query_async(c).await.expect("dbsize"),
            Raw::Cluster(_, urls) => {
                let mut total = 0;
                for url in urls.iter() {
                    let mut c = Raw::standalone(url).await;
                    total += c.q::<u64>(&redis::cmd("DBSIZE")).await;
                }
                total
            }
        }
    }

    pub fn conn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Raw::Single(c) => c,
            Raw::Cluster(c, _) => c,
        }
    }
}

pub struct Fixture {
    pub builder: RedisStoreBuilder,
    pub raw: Raw,
}

impl Fixture {
    /// A store in `namespace` with the bulk timeout.
    pub fn store(&self, namespace: &str) -> RedisStore {
        self.builder
            .clone()
            .namespace(namespace)
            .op_timeout(BULK_TIMEOUT)
            .build()
            .expect("valid config")
    }
}

pub fn cmd(args: &[&str]) -> Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

fn entry<V>(value: V, ttl: Duration) -> Entry<V> {
    Entry::new(value, SystemClock.now(), ttl)
}

pub async fn values_and_absent_markers_round_trip(f: &mut Fixture) {
    let store = f.store("roundtrip");
    let value = entry(vec![1u64, 2, 3], Duration::from_secs(60))
        .with_stale_window(Duration::from_secs(30))
        .with_tags(["t1", "t2"])
        .expect("tags");
    store.put(("user", 1u32), value.clone()).await.expect("put");
    let got: Option<Entry<Vec<u64>>> = store.get(&("user", 1u32)).await.expect("get");
    assert_eq!(got, Some(value));

    let absent: Entry<Vec<u64>> = Entry::absent(SystemClock.now(), Duration::from_secs(10));
    store
        .put(("user", 2u32), absent.clone())
        .await
        .expect("put absent");
    let got: Option<Entry<Vec<u64>>> = store.get(&("user", 2u32)).await.expect("get absent");
    let got = got.expect("an absent marker is a hit, not a miss");
    assert!(got.is_absent());
    assert_eq!(got, absent);

    let miss: Option<Entry<Vec<u64>>> = store.get(&("user", 3u32)).await.expect("get");
    assert_eq!(miss, None);
    assert!(
        Store::<(&str, u32), Vec<u64>>::remove(&store, &("user", 1u32))
            .await
            .expect("rm")
    );
    assert!(
        !Store::<(&str, u32), Vec<u64>>::remove(&store, &("user", 1u32))
            .await
            .expect("rm")
    );
    let gone: Option<Entry<Vec<u64>>> = store.get(&("user", 1u32)).await.expect("get");
    assert_eq!(gone, None);
}

pub async fn ttl_is_the_physical_expiry_in_milliseconds(f: &mut Fixture) {
    let store = f.store("ttl");
    let key = store.redis_key("k").expect("key");
    let e =
        entry(1u8, Duration::from_millis(1_500)).with_stale_window(Duration::from_millis(2_000));
    store.put("k", e).await.expect("put");
    let pttl: i64 = f.raw.q(&cmd(&["PTTL", &key])).await;
    assert!(
        (3_000..=3_500).contains(&pttl),
        "PTTL {pttl} must be fresh + stale = 3500 ms, minus the time the test took"
    );
    // A short-lived entry really disappears from Redis (Redis's own clock).
    store
        .put("short", entry(2u8, Duration::from_millis(50)))
        .await
        .expect("put");
    let short = store.redis_key("short").expect("key");
    let pttl: i64 = f.raw.q(&cmd(&["PTTL", &short])).await;
    assert!((1..=50).contains(&pttl), "PTTL {pttl}");
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let exists: u64 = f.raw.q(&cmd(&["EXISTS", &short])).await;
        if exists == 0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "Redis expired the entry");
    // An entry already past its physical expiry is not written at all.
    let old = Entry::new(
        3u8,
        SystemClock.now().saturating_sub(Duration::from_secs(10)),
        Duration::from_secs(1),
    );
    store.put("old", old).await.expect("put expired");
    let exists: u64 = f
        .raw
        .q(&cmd(&["EXISTS", &store.redis_key("old").expect("key")]))
        .await;
    assert_eq!(exists, 0);
}

pub async fn batches_keep_order_and_report_missing_keys(f: &mut Fixture) {
    let store = f.store("batch");
    let entries: Vec<(u32, Entry<String>)> = (0..200)
        .filter(|i| i % 3 != 0)
        .map(|i| (i, entry(format!("v{i}"), Duration::from_secs(60))))
        .collect();
    let written = entries.len() as u64;
    store.put_many(entries).await.expect("put_many");
    let keys: Vec<u32> = (0..200).collect();
    let got: Vec<Option<Entry<String>>> = store.get_many(&keys).await.expect("get_many");
    assert_eq!(got.len(), 200);
    for (i, slot) in got.iter().enumerate() {
        if i % 3 == 0 {
            assert!(slot.is_none(), "key {i} was never written");
        } else {
            let v = slot.as_ref().and_then(|e| e.value().cloned());
            assert_eq!(v, Some(format!("v{i}")), "key {i}");
        }
    }
    let none: Vec<Option<Entry<String>>> =
        store.get_many(&[] as &[u32]).await.expect("empty batch");
    assert!(none.is_empty());
    let removed = Store::<u32, String>::remove_many(&store, &keys)
        .await
        .expect("remove_many");
    assert_eq!(removed, written);
    let got: Vec<Option<Entry<String>>> = store.get_many(&keys).await.expect("get_many");
    assert!(got.iter().all(Option::is_none));
}

pub async fn prefix_invalidation_stays_in_its_namespace(f: &mut Fixture, bulk: u32) {
    let a = f.store("ns-a");
    let b = f.store("ns-b");
    let mk = |i: u32| (format!("item:{i}"), entry(i, Duration::from_secs(300)));
    for start in (0..bulk).step_by(5_000) {
        let chunk: Vec<_> = (start..(start + 5_000).min(bulk)).map(mk).collect();
        a.put_many(chunk).await.expect("put_many a");
    }
    let other: Vec<_> = (0..1_000).map(mk).collect();
    b.put_many(other).await.expect("put_many b");
    // Keys full of glob metacharacters.
    for k in ["a*1", "a?2", "a[3]", "ab", "a\\*", "a*"] {
        a.put(k.to_owned(), entry(0u32, Duration::from_secs(300)))
            .await
            .expect("put");
    }
    let before = f.raw.dbsize().await;
    assert_eq!(before, u64::from(bulk) + 1_000 + 6);

    let removed = Store::<String, u32>::invalidate_prefix(&a, "a*")
        .await
        .expect("prefix");
    assert_eq!(
        removed, 2,
        "only `a*1` and `a*` start with the literal `a*`"
    );
    let left: Option<Entry<u32>> = a.get(&"a?2".to_owned()).await.expect("get");
    assert!(left.is_some());
    let removed = Store::<String, u32>::invalidate_prefix(&a, "a[")
        .await
        .expect("prefix");
    assert_eq!(removed, 1);

    let removed = Store::<String, u32>::invalidate_prefix(&a, "item:")
        .await
        .expect("prefix");
    assert_eq!(removed, u64::from(bulk));
    assert_eq!(
        f.raw.dbsize().await,
        1_000 + 3,
        "namespace b and three `a…` keys remain"
    );
    let still: Vec<Option<Entry<u32>>> = b
        .get_many(&["item:0".to_owned(), "item:999".to_owned()])
        .await
        .expect("get b");
    assert!(
        still.iter().all(Option::is_some),
        "the other namespace is untouched"
    );
    let removed = Store::<String, u32>::invalidate_prefix(&a, "")
        .await
        .expect("prefix all");
    assert_eq!(removed, 3);
    assert_eq!(f.raw.dbsize().await, 1_000);
}

pub async fn tag_invalidation_removes_every_member(f: &mut Fixture, members: u32) {
    let store = f.store("tags");
    let tagged = |tag: &'static str| {
        move |i: u32| {
            (
                format!("{tag}:{i}"),
                entry(i, Duration::from_secs(300))
                    .with_tags([tag, "all"])
                    .expect("tags"),
            )
        }
    };
    for start in (0..members).step_by(2_500) {
        let chunk: Vec<_> = (start..(start + 2_500).min(members))
            .map(tagged("big"))
            .collect();
        store.put_many(chunk).await.expect("put_many");
    }
    let small: Vec<_> = (0..100).map(tagged("small")).collect();
    store.put_many(small).await.expect("put_many");
    store
        .put("plain".to_owned(), entry(7u32, Duration::from_secs(300)))
        .await
        .expect("put");

    let removed = Store::<String, u32>::invalidate_tag(&store, "big")
        .await
        .expect("tag");
    assert_eq!(removed, u64::from(members));
    let probe: Vec<Option<Entry<u32>>> = store
        .get_many(&[
            "big:0".to_owned(),
            "big:1".to_owned(),
            "small:0".to_owned(),
            "plain".to_owned(),
        ])
        .await
        .expect("get_many");
    assert!(probe[0].is_none() && probe[1].is_none());
    assert!(probe[2].is_some() && probe[3].is_some());
    let set_len: u64 = f.raw.q(&cmd(&["SCARD", &store.tag_key("big")])).await;
    assert_eq!(set_len, 0, "handled members leave the tag set");

    // Written after the invalidation: a later invalidation finds it again.
    store
        .put_many(vec![tagged("big")(1)])
        .await
        .expect("re-put");
    assert_eq!(
        Store::<String, u32>::invalidate_tag(&store, "big")
            .await
            .expect("tag"),
        1
    );
    assert_eq!(
        Store::<String, u32>::invalidate_tag(&store, "all")
            .await
            .expect("tag"),
        100
    );
    assert_eq!(
        Store::<String, u32>::invalidate_tag(&store, "nobody")
            .await
            .expect("tag"),
        0
    );
    let err = Store::<String, u32>::invalidate_tag(&store, "")
        .await
        .expect_err("empty tag");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

pub async fn corrupt_bytes_are_a_counted_miss_and_deleted(f: &mut Fixture) {
    let store = f.store("corrupt");
    let key = store.redis_key(&7u32).expect("key");
    let valid = {
        store
            .put(7u32, entry("ok".to_owned(), Duration::from_secs(60)))
            .await
            .expect("put");
        let v: Vec<u8> = f.raw.q(&cmd(&["GET", &key])).await;
        v
    };
    let mut other_version = valid.clone();
    other_version[2] = 99;
    let truncated = valid[..valid.len() - 1].to_vec();
    let foreign = b"{\"json\": \"from another service\"}".to_vec();
    for (n, bytes) in [foreign, other_version, truncated].into_iter().enumerate() {
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(bytes);
        let _: () = f.raw.q(&set).await;
        let got: Option<Entry<String>> = store.get(&7u32).await.expect("a miss, not an error");
        assert_eq!(got, None);
        let exists: u64 = f.raw.q(&cmd(&["EXISTS", &key])).await;
        assert_eq!(exists, 0, "the bad value was deleted");
        assert_eq!(store.stats().decode_errors, n as u64 + 1);
    }
    // The same through a batch read.
    let _: () = f.raw.q(&cmd(&["SET", &key, "garbage"])).await;
    let got: Vec<Option<Entry<String>>> = store.get_many(&[7u32, 8u32]).await.expect("get_many");
    assert_eq!(got, vec![None, None]);
    let exists: u64 = f.raw.q(&cmd(&["EXISTS", &key])).await;
    assert_eq!(exists, 0);
    // A value read as a type it does not fit is a decode error too, not garbage.
    store
        .put(9u32, entry(vec![7u8, 2, 3], Duration::from_secs(60)))
        .await
        .expect("put");
    let as_bool: Option<Entry<bool>> = store.get(&9u32).await.expect("miss");
    assert_eq!(as_bool, None);
    assert_eq!(store.stats().decode_errors, 5);
}

/// `remove_if_written` removes a key only while it holds that very write:
/// not after a later write of the key (even of the same value), not once it
/// is gone, and a key of another type is refused and left.
pub async fn a_write_is_removed_only_while_the_key_holds_it(f: &mut Fixture) {
    let store = f.store("takeback");
    // Entries stamped now, so they are live when written.
    let at = SystemClock.now();
    let mine = Entry::new("v".to_owned(), at, Duration::from_secs(60))
        .with_tags(["t"])
        .expect("tag");
    // The same value, written a millisecond later.
    let later = Timestamp::from_millis(at.as_millis() + 1);
    let theirs = Entry::new("v".to_owned(), later, Duration::from_secs(60));
    store.put(1u32, mine.clone()).await.expect("put");
    assert!(store.remove_if_written(&1u32, &mine).await.expect("remove"));
    let gone: Option<Entry<String>> = store.get(&1u32).await.expect("get");
    assert_eq!(gone, None);
    assert!(
        !store.remove_if_written(&1u32, &mine).await.expect("remove"),
        "already gone"
    );
    store.put(1u32, mine.clone()).await.expect("put");
    store.put(1u32, theirs.clone()).await.expect("put");
    assert!(!store.remove_if_written(&1u32, &mine).await.expect("remove"));
    let kept: Option<Entry<String>> = store.get(&1u32).await.expect("get");
    assert_eq!(kept, Some(theirs));
    let key = store.redis_key(&2u32).expect("key");
    let _: u64 = f.raw.q(&cmd(&["SADD", &key, "x"])).await;
    let err = store
        .remove_if_written(&2u32, &mine)
        .await
        .expect_err("wrong type");
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    let exists: u64 = f.raw.q(&cmd(&["EXISTS", &key])).await;
    assert_eq!(exists, 1, "left alone");
}

pub async fn oversized_input_is_refused_before_any_write(f: &mut Fixture) {
    let store = f
        .builder
        .clone()
        .namespace("limits")
        .max_value_size(1_000)
        .max_key_len(64)
        .build()
        .expect("config");
    let before = f.raw.dbsize().await;
    let long_key = "k".repeat(100);
    let err = store
        .put(long_key.clone(), entry(1u8, Duration::from_secs(60)))
        .await
        .expect_err("key too long");
    assert!(matches!(
        err,
        CacheError::InvalidInput(cache_core::InvalidInput::KeyTooLong { .. })
    ));
    let err = store
        .put(
            "big".to_owned(),
            entry(vec![0u8; 5_000], Duration::from_secs(60)),
        )
        .await
        .expect_err("value too large");
    assert!(matches!(
        err,
        CacheError::InvalidInput(cache_core::InvalidInput::ValueTooLarge { .. })
    ));
    let batch = vec![
        (
            "fine".to_owned(),
            entry(vec![0u8; 10], Duration::from_secs(60)),
        ),
        (
            "huge".to_owned(),
            entry(vec![0u8; 5_000], Duration::from_secs(60)),
        ),
    ];
    assert_eq!(
        store.put_many(batch).await.expect_err("batch").kind(),
        ErrorKind::InvalidInput
    );
    let got: Result<Option<Entry<u8>>, _> = store.get(&long_key).await;
    assert_eq!(
        got.expect_err("get of a too-long key").kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(f.raw.dbsize().await, before, "nothing was written");
}

pub async fn health_reports_version_role_and_latency(f: &mut Fixture) {
    let store = f.store("health");
    let h = store.check().await;
    assert!(h.error.is_none(), "{h:?}");
    assert!(h.latency.is_some());
    assert!(
        h.version
            .as_deref()
            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit())),
        "{h:?}"
    );
    assert_eq!(h.role.as_deref(), Some("master"));
    assert_eq!(h.connected, 1);
    let report = Store::<u32, u32>::health(&store).await;
    assert_eq!(report.tier, "l2");
    assert!(report.latency.is_some());
}

/// `publish_clear` raises the namespace's epoch (never lowers it) and tells
/// subscribers in the same round trip; another namespace keeps its own epoch.
pub async fn clear_epoch_rises_and_is_published(f: &mut Fixture) {
    use cache_core::Timestamp;
    use cache_store_redis::{Action, BusEvent};
    let a = f.store("epoch");
    let other = f.store("epoch-other");
    assert_eq!(a.clear_epoch().await.expect("read"), Timestamp::ZERO);
    let mut sub = a.bus().subscribe().await;
    let bus = a.bus();
    bus.publish_clear(Timestamp::from_millis(5_000))
        .await
        .expect("clear");
    assert_eq!(
        a.clear_epoch().await.expect("read"),
        Timestamp::from_millis(5_000)
    );
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("in time");
    assert_eq!(
        event.map(|e| match e {
            BusEvent::Message(m) => Some(m.action),
            BusEvent::Gap(_) => None,
        }),
        Some(Some(Action::ClearBefore(5_000)))
    );
    // An older clear (a replay of one made during an outage) never lowers it.
    bus.publish_clear(Timestamp::from_millis(4_000))
        .await
        .expect("older clear");
    a.raise_clear_epoch(Timestamp::from_millis(3_000))
        .await
        .expect("raise");
    assert_eq!(
        a.clear_epoch().await.expect("read"),
        Timestamp::from_millis(5_000)
    );
    assert_eq!(other.clear_epoch().await.expect("read"), Timestamp::ZERO);
    // Garbage under the key reads as never cleared, and a clear repairs it.
    let _: () = f.raw.q(&cmd(&["SET", &a.epoch_key(), "junk"])).await;
    assert_eq!(a.clear_epoch().await.expect("read"), Timestamp::ZERO);
    a.raise_clear_epoch(Timestamp::from_millis(6_000))
        .await
        .expect("raise");
    assert_eq!(
        a.clear_epoch().await.expect("read"),
        Timestamp::from_millis(6_000)
    );
}

/// A value over the read limit (planted behind the store's back) is a counted
/// miss and deleted, and Redis sends the reader at most the limit of it — in a
/// single read, a batch, and next to values of another type.
pub async fn oversized_values_are_a_counted_miss_and_never_read_whole(f: &mut Fixture) {
    const LIMIT: usize = 64 * 1024;
    let store = f
        .builder
        .clone()
        .namespace("oversized")
        .op_timeout(BULK_TIMEOUT)
        .max_read_size(LIMIT)
        .build()
        .expect("valid config");
    let big = vec![b'x'; 8 << 20];
    let plant = |key: String| {
        let mut set = redis::cmd("SET");
        set.arg(key).arg(big.as_slice());
        set
    };
    let (k1, k2) = (
        store.redis_key(&1u32).expect("key"),
        store.redis_key(&2u32).expect("key"),
    );
    let _: () = f.raw.q(&plant(k1.clone())).await;
    let sent_before = net_output(f).await;
    let got: Option<Entry<String>> = store.get(&1u32).await.expect("a miss, not an error");
    assert_eq!(got, None);
    let sent = net_output(f).await - sent_before;
    assert!(
        sent < 4 * LIMIT as u64,
        "Redis sent {sent} bytes for an 8 MiB value"
    );
    let exists: u64 = f.raw.q(&cmd(&["EXISTS", &k1])).await;
    assert_eq!(exists, 0, "the oversized value was deleted");
    assert_eq!(store.stats().oversized_reads, 1);

    // A batch: the oversized value, a list, a good value and a missing key.
    let _: () = f.raw.q(&plant(k2)).await;
    let k3 = store.redis_key(&3u32).expect("key");
    let _: u64 = f.raw.q(&cmd(&["RPUSH", &k3, "a", "b"])).await;
    store
        .put(4u32, entry("fits".to_owned(), Duration::from_secs(60)))
        .await
        .expect("put");
    let got: Vec<Option<Entry<String>>> = store.get_many(&[2u32, 3, 4, 5]).await.expect("get_many");
    let values: Vec<Option<String>> = got
        .into_iter()
        .map(|e| e.and_then(Entry::into_value))
        .collect();
    assert_eq!(values, vec![None, None, Some("fits".to_owned()), None]);
    assert_eq!(store.stats().oversized_reads, 2);
    assert_eq!(store.stats().decode_errors, 1, "the list");
    assert_eq!(f.raw.q::<u64>(&cmd(&["EXISTS", &k3])).await, 0);
    // A limit of zero (or over Redis's own) fails the build.
    let err = f
        .builder
        .clone()
        .max_read_size(0)
        .build()
        .expect_err("zero");
    assert_eq!(err.field(), "max_read_size");
}

/// Bytes the deployment has sent to clients so far (every node of a cluster).
async fn net_output(f: &mut Fixture) -> u64 {
    let urls = match &f.raw {
        Raw::Single(_) => None,
        Raw::Cluster(_, urls) => Some(urls.clone()),
    };
    let infos: Vec<String> = match urls {
        None => vec![f.raw.q(&cmd(&["INFO", "stats"])).await],
        Some(urls) => {
            let mut all = Vec::new();
            for url in urls {
                all.push(
                    Raw::standalone(&url)
                        .await
                        .q(&cmd(&["INFO", "stats"]))
                        .await,
                );
            }
            all
        }
    };
    infos
        .iter()
        .flat_map(|i| i.lines())
        .filter_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}
