//! `#[cached]`: what a memoized fn computes, stores and shares.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::{CacheKey, MockClock};
use cache_testkit::RedisServer;
use resilient_cache::{Cache, FailMode, Jitter, cached};

fn memory_cache<K, V>(name: &str) -> Cache<K, V>
where
    K: cache_core::CacheKey + cache_core::DecodeKey + std::hash::Hash + Eq + Clone,
    K: Send + Sync + 'static,
    V: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    Cache::builder(name).build().expect("config")
}

fn l1_len<K, V>(cache: &Cache<K, V>) -> usize
where
    K: cache_core::CacheKey + cache_core::DecodeKey + std::hash::Hash + Eq + Clone,
    K: Send + Sync + 'static,
    V: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    cache.tiered().l1().len()
}

// --- (1) and (2): two entries ------------------------------------------------

static SQUARES: LazyLock<Cache<u64, u64>> = LazyLock::new(|| memory_cache("squares"));
static SQUARE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = SQUARES)]
async fn square(n: u64) -> u64 {
    SQUARE_RUNS.fetch_add(1, Ordering::SeqCst);
    n * n
}

#[tokio::test]
async fn called_with_1_and_2_the_fn_has_two_entries() {
    assert_eq!(square(1).await, 1);
    assert_eq!(square(2).await, 4);
    assert_eq!(square(1).await, 1);
    assert_eq!(square(2).await, 4);
    assert_eq!(
        SQUARE_RUNS.load(Ordering::SeqCst),
        2,
        "one computation per argument"
    );
    assert_eq!(l1_len(&SQUARES), 2);
    assert_eq!(SQUARES.get(&1).await.expect("get"), Some(1));
    assert_eq!(SQUARES.get(&2).await.expect("get"), Some(4));
}

// --- the implicit cache, and keys that must not collide --------------------

static JOIN_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Keyed by both strings: `("a:b", "c")` and `("a", "b:c")` are different calls
/// although naive joining would give both `a:b:c`.
#[cached(ttl = 60, name = "joins")]
async fn join(left: &str, right: &str) -> String {
    JOIN_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{left}|{right}")
}

#[tokio::test]
async fn distinct_arguments_never_share_an_entry() {
    assert_eq!(join("a:b", "c").await, "a:b|c");
    assert_eq!(join("a", "b:c").await, "a|b:c");
    assert_eq!(join("a:b", "c").await, "a:b|c");
    assert_eq!(join("a", "b:c").await, "a|b:c");
    assert_eq!(JOIN_RUNS.load(Ordering::SeqCst), 2);
    // The default key is the owned arguments' tuple, with the tuple encoding.
    assert_ne!(
        ("a:b".to_owned(), "c".to_owned()).to_key_string(),
        ("a".to_owned(), "b:c".to_owned()).to_key_string()
    );
}

static CONST_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
async fn answer() -> u32 {
    CONST_RUNS.fetch_add(1, Ordering::SeqCst);
    42
}

#[tokio::test]
async fn a_fn_without_arguments_has_one_entry() {
    assert_eq!(answer().await, 42);
    assert_eq!(answer().await, 42);
    assert_eq!(CONST_RUNS.load(Ordering::SeqCst), 1);
}

// --- custom keys -------------------------------------------------------------

static GREET_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `loud` does not change the cached greeting's identity here: the key is the id.
#[cached(name = "greetings", key = format!("user:{id}"))]
async fn greet(id: u32, loud: bool) -> String {
    GREET_RUNS.fetch_add(1, Ordering::SeqCst);
    if loud {
        format!("HELLO {id}")
    } else {
        format!("hello {id}")
    }
}

static SUM_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = values.iter().sum::<u64>(), key_type = u64)]
async fn describe_sum(values: &[u64]) -> String {
    SUM_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{} values", values.len())
}

#[tokio::test]
async fn a_custom_key_decides_what_is_the_same_call() {
    assert_eq!(greet(7, false).await, "hello 7");
    assert_eq!(greet(7, true).await, "hello 7", "same key, cached answer");
    assert_eq!(greet(8, true).await, "HELLO 8");
    assert_eq!(GREET_RUNS.load(Ordering::SeqCst), 2);

    assert_eq!(describe_sum(&[1, 2, 3]).await, "3 values");
    assert_eq!(describe_sum(&[6]).await, "3 values", "sum 6 again");
    assert_eq!(describe_sum(&[5]).await, "1 values");
    assert_eq!(SUM_RUNS.load(Ordering::SeqCst), 2);
}

// --- unless, Option, Result ---------------------------------------------------

static LOOKUPS: LazyLock<Cache<String, String>> = LazyLock::new(|| memory_cache("lookups"));
static LOOKUP_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = LOOKUPS, unless = |v| v.is_empty())]
async fn lookup(word: &str) -> String {
    LOOKUP_RUNS.fetch_add(1, Ordering::SeqCst);
    if word.starts_with('x') {
        String::new()
    } else {
        word.to_uppercase()
    }
}

#[tokio::test]
async fn unless_keeps_a_result_out_of_the_cache() {
    assert_eq!(lookup("xyz").await, "");
    assert_eq!(lookup("xyz").await, "");
    assert_eq!(
        LOOKUP_RUNS.load(Ordering::SeqCst),
        2,
        "empty: computed each time"
    );
    assert_eq!(LOOKUPS.get(&"xyz".to_owned()).await.expect("get"), None);
    assert_eq!(lookup("abc").await, "ABC");
    assert_eq!(lookup("abc").await, "ABC");
    assert_eq!(LOOKUP_RUNS.load(Ordering::SeqCst), 3, "kept once computed");
}

static USERS: LazyLock<Cache<u64, String>> = LazyLock::new(|| memory_cache("users"));
static USER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = USERS)]
async fn find_user(id: u64) -> Option<String> {
    USER_RUNS.fetch_add(1, Ordering::SeqCst);
    (id < 100).then(|| format!("user {id}"))
}

#[tokio::test]
async fn none_is_cached_as_absent() {
    assert_eq!(find_user(500).await, None);
    assert_eq!(find_user(500).await, None);
    assert_eq!(find_user(5).await.as_deref(), Some("user 5"));
    assert_eq!(find_user(5).await.as_deref(), Some("user 5"));
    assert_eq!(
        USER_RUNS.load(Ordering::SeqCst),
        2,
        "the miss is remembered too"
    );
    assert_eq!(l1_len(&USERS), 2, "an entry and an absent marker");
}

static PARSE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The error type is not an `std::error::Error` and is returned unchanged; `?` works.
#[cached(ttl = 60)]
async fn parse_port(text: &str) -> Result<u16, String> {
    PARSE_RUNS.fetch_add(1, Ordering::SeqCst);
    let n: u16 = text
        .trim()
        .parse()
        .map_err(|e| format!("bad port {text:?}: {e}"))?;
    if n == 0 {
        return Err("port 0".to_owned());
    }
    Ok(n)
}

#[tokio::test]
async fn only_ok_is_cached_and_errors_come_back_unchanged() {
    let err = parse_port("eighty").await.expect_err("not a number");
    assert!(err.starts_with("bad port \"eighty\""), "{err}");
    assert_eq!(parse_port("0").await, Err("port 0".to_owned()));
    assert_eq!(parse_port("0").await, Err("port 0".to_owned()));
    assert_eq!(
        PARSE_RUNS.load(Ordering::SeqCst),
        3,
        "errors are never cached"
    );
    assert_eq!(parse_port("8080").await, Ok(8080));
    assert_eq!(parse_port("8080").await, Ok(8080));
    assert_eq!(PARSE_RUNS.load(Ordering::SeqCst), 4);
}

static ORDERS: LazyLock<Cache<u64, Vec<u64>>> = LazyLock::new(|| memory_cache("orders"));
static ORDER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = ORDERS)]
async fn orders_of(customer: u64) -> std::io::Result<Option<Vec<u64>>> {
    ORDER_RUNS.fetch_add(1, Ordering::SeqCst);
    match customer {
        0 => Err(std::io::Error::other("source down")),
        1..=9 => Ok(Some(vec![customer * 10, customer * 10 + 1])),
        _ => Ok(None),
    }
}

#[tokio::test]
async fn result_of_option_caches_ok_none_as_absent_and_does_not_cache_errors() {
    assert_eq!(orders_of(3).await.expect("ok"), Some(vec![30, 31]));
    assert_eq!(orders_of(3).await.expect("ok"), Some(vec![30, 31]));
    assert_eq!(orders_of(42).await.expect("ok"), None);
    assert_eq!(orders_of(42).await.expect("ok"), None);
    assert!(orders_of(0).await.is_err());
    assert!(orders_of(0).await.is_err());
    assert_eq!(ORDER_RUNS.load(Ordering::SeqCst), 4);
}

// --- methods: keyed by arguments, never by the object -----------------------

struct Catalog {
    prices: Cache<(String, u32), u64>,
    runs: AtomicUsize,
    markup: u64,
}

impl Catalog {
    #[cached(cache = self.prices, ttl = Duration::from_secs(30))]
    async fn price(&self, sku: &str, quantity: u32) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        u64::from(quantity) * self.markup + sku.len() as u64
    }
}

#[tokio::test]
async fn methods_are_keyed_by_their_arguments_not_by_self() {
    let prices = memory_cache("prices");
    let first = Catalog {
        prices: prices.clone(),
        runs: AtomicUsize::new(0),
        markup: 100,
    };
    let second = Catalog {
        prices,
        runs: AtomicUsize::new(0),
        markup: 100,
    };
    assert_eq!(first.price("ab", 2).await, 202);
    assert_eq!(first.price("ab", 3).await, 302);
    assert_eq!(
        second.price("ab", 2).await,
        202,
        "another object, same arguments"
    );
    assert_eq!(first.runs.load(Ordering::SeqCst), 2);
    assert_eq!(second.runs.load(Ordering::SeqCst), 0);
    let key = ("ab".to_owned(), 2);
    assert_eq!(first.prices.get(&key).await.expect("get"), Some(202));
}

// --- TTL, coalescing, failures -------------------------------------------------

struct Clocked {
    cache: Cache<u64, u64>,
    runs: AtomicUsize,
}

impl Clocked {
    #[cached(cache = self.cache, ttl = 5)]
    async fn tick(&self, n: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst) as u64 + n
    }
}

#[tokio::test]
async fn the_ttl_option_bounds_a_cached_value() {
    let clock = MockClock::default();
    let svc = Clocked {
        cache: Cache::builder("clocked")
            .jitter(Jitter::None)
            .default_ttl(Duration::from_secs(3600))
            .clock(clock.clone())
            .build()
            .expect("config"),
        runs: AtomicUsize::new(0),
    };
    assert_eq!(svc.tick(10).await, 10);
    clock.advance(Duration::from_secs(4));
    assert_eq!(svc.tick(10).await, 10, "within 5 s: cached");
    clock.advance(Duration::from_secs(2));
    assert_eq!(svc.tick(10).await, 11, "past 5 s: computed again");
    assert_eq!(svc.runs.load(Ordering::SeqCst), 2);
}

static SLOW_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(name = "slow")]
async fn slow_double(n: u64) -> u64 {
    SLOW_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    n * 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_computation() {
    let calls = (0..500).map(|_| tokio::spawn(slow_double(21)));
    let answers = futures_util::future::join_all(calls).await;
    for a in answers {
        assert_eq!(a.expect("task"), 42);
    }
    assert_eq!(SLOW_RUNS.load(Ordering::SeqCst), 1);
}

static FLAKY: LazyLock<Cache<u64, u64>> = LazyLock::new(|| memory_cache("flaky"));
static FLAKY_RUNS: AtomicUsize = AtomicUsize::new(0);
/// Holds the first computation until the test has a follower waiting on it.
static FLAKY_GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

/// The first computation fails once the gate opens; later ones succeed.
#[cached(cache = FLAKY)]
async fn flaky(n: u64) -> Result<u64, String> {
    let run = FLAKY_RUNS.fetch_add(1, Ordering::SeqCst);
    if run == 0 {
        let _ = FLAKY_GATE.acquire().await;
        Err(format!("run {run} failed"))
    } else {
        Ok(n + 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_coalesced_with_a_failed_computation_runs_its_own() {
    let leader = tokio::spawn(flaky(1));
    cache_testkit::eventually("the leader computes", || {
        FLAKY_RUNS.load(Ordering::SeqCst) == 1
    })
    .await;
    // Its first poll joins the leader's flight.
    let mut follower = Box::pin(flaky(1));
    assert!(futures_util::poll!(&mut follower).is_pending());
    FLAKY_GATE.add_permits(1);
    assert_eq!(leader.await.expect("task"), Err("run 0 failed".to_owned()));
    assert_eq!(follower.await, Ok(2));
    assert_eq!(FLAKY_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(FLAKY.stats().coalesced, 1, "the follower did join");
}

// --- Redis: shared across instances, and faults never change the answer ------

struct Pricing {
    cache: Cache<u64, String>,
    runs: AtomicUsize,
}

impl Pricing {
    #[cached(cache = self.cache)]
    async fn quote(&self, id: u64) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("quote {id}")
    }
}

fn pricing(server: &RedisServer, mode: FailMode) -> Pricing {
    Pricing {
        cache: Cache::builder("pricing")
            .redis_url(server.url())
            .fail_mode(mode)
            .op_timeout(Duration::from_millis(200))
            .build()
            .expect("config"),
        runs: AtomicUsize::new(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_reads_the_value_from_redis_and_a_dead_redis_changes_nothing() {
    let mut server = RedisServer::start().expect("redis");
    let a = pricing(&server, FailMode::Open);
    let b = pricing(&server, FailMode::Open);
    assert_eq!(a.quote(1).await, "quote 1");
    cache_testkit::eventually("the computed value reaches Redis", || {
        let mut conn = server.connect().expect("conn");
        matches!(conn.cmd(&["DBSIZE"]), Ok(cache_testkit::Reply::Int(n)) if n >= 1)
    })
    .await;
    assert_eq!(b.quote(1).await, "quote 1");
    assert_eq!(b.runs.load(Ordering::SeqCst), 0, "instance b read L2");

    server.kill();
    let closed = pricing(&server, FailMode::Closed);
    for svc in [&a, &b, &closed] {
        assert_eq!(
            svc.quote(2).await,
            "quote 2",
            "Redis down: still the answer"
        );
    }
    assert_eq!(closed.runs.load(Ordering::SeqCst), 1);
    assert!(closed.cache.stats().errors >= 1, "the fault was counted");
}
