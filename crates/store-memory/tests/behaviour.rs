//! Behaviour of the in-memory store: eviction, TTL on the mock clock, limits,
//! invalidation, build-time validation and the `Store` contract.

mod common;

use std::time::Duration;

use cache_core::{CacheError, Clock, Entry, ErrorKind, InvalidInput, MockClock, Store};
use cache_store_memory::{EvictionReason, MemoryStore};
use common::now;

const TTL: Duration = Duration::from_secs(60);

fn one_shard(cap: usize, clock: &MockClock) -> MemoryStore<u32, String> {
    MemoryStore::builder()
        .max_entries(cap)
        .shards(1)
        .clock(clock.clone())
        .build()
        .expect("valid config")
}

fn sorted_keys(s: &MemoryStore<u32, String>) -> Vec<u32> {
    let mut keys = s.keys();
    keys.sort_unstable();
    keys
}

/// One shard, weighed by string length.
fn by_length(
    max_entries: usize,
    max_weight: u64,
    clock: &MockClock,
) -> cache_store_memory::MemoryStoreBuilder<u32, String> {
    MemoryStore::builder()
        .max_entries(max_entries)
        .max_weight(max_weight)
        .shards(1)
        .weigher(|_, v: &String| v.len() as u64)
        .clock(clock.clone())
}

fn entry(v: &str, clock: &MockClock) -> Entry<String> {
    Entry::new(v.to_string(), clock.now(), TTL)
}

#[test]
fn evicts_keys_never_read_and_keeps_those_that_were() {
    let clock = MockClock::default();
    let s = one_shard(3, &clock);
    for k in 1..=3 {
        s.put_sync(k, entry("v", &clock)).expect("put");
    }
    assert!(s.get_sync(&1).is_some()); // 1 has been read; 2 and 3 have not
    s.put_sync(4, entry("v", &clock)).expect("put");
    assert_eq!(
        sorted_keys(&s),
        vec![1, 3, 4],
        "2 was the oldest unread key"
    );
    s.put_sync(5, entry("v", &clock)).expect("put");
    assert_eq!(sorted_keys(&s), vec![1, 4, 5], "then 3; 1 stays");
    // 2 was evicted recently and is asked for again: wanted twice, it beats the
    // unread newcomer 4, which goes instead.
    s.put_sync(2, entry("v", &clock)).expect("put");
    assert_eq!(sorted_keys(&s), vec![1, 2, 5]);
    assert_eq!(s.stats().evictions(EvictionReason::Capacity), 3);
}

#[test]
fn a_scan_of_one_time_keys_does_not_flush_the_working_set() {
    let clock = MockClock::default();
    let s = one_shard(100, &clock);
    for k in 0..100 {
        s.put_sync(k, entry("v", &clock)).expect("put");
    }
    for k in 0..80 {
        assert!(s.get_sync(&k).is_some());
    }
    for k in 1_000..11_000 {
        s.put_sync(k, entry("scan", &clock)).expect("put");
    }
    // A key seen for the first time never displaces one in main, but the
    // ghost that tells returning keys apart is a bloom filter: one of its rare
    // false positives lets a scanned key contest, and over a scan a hundred
    // times the cache that costs a few keys. Over 3,000 hash seeds: 80 kept
    // in 50 %, 79 in 33 %, 78 in 13 %, 77 in 2.8 %, 76 in 0.6 %, 75 in 0.1 %,
    // never fewer (the bound here was 78, which failed one run in thirty).
    // Without the gate the scan keeps none.
    let kept = (0..80).filter(|k| s.peek_sync(k).is_some()).count();
    assert!(
        kept >= 72,
        "the scan pushed out keys in use: {kept} of 80 kept"
    );
    assert_eq!(s.len(), 100);
}

/// A loop over a few times the capacity, the pattern LRU hits nothing on:
/// Belady keeps a fixed set and hits `capacity / keys` of the reads (20 %
/// here). With the sketch halved every 10 increments per entry the store hit
/// 10–11 % (every loop key looked as new as the candidate that had just
/// missed, so admission kept churning *main*); with at least 80 per entry,
/// 16.7–18.8 % over 30 processes.
#[test]
fn a_loop_five_times_the_capacity_keeps_a_fixed_set() {
    let clock = MockClock::default();
    let s: MemoryStore<u32, u32> = MemoryStore::builder()
        .max_entries(4_000)
        .shards(8)
        .clock(clock.clone())
        .build()
        .expect("valid config");
    let keys = 20_000u32;
    let (mut hits, mut reads) = (0u32, 0u32);
    for pass in 0..16 {
        for k in 0..keys {
            let hit = s.get_fresh_sync(&k).is_some();
            if !hit {
                s.put_sync(k, Entry::new(k, clock.now(), Duration::from_secs(3_600)))
                    .expect("put");
            }
            // The first passes fill the store and teach the sketch.
            if pass >= 8 {
                reads += 1;
                hits += u32::from(hit);
            }
        }
    }
    let ratio = f64::from(hits) / f64::from(reads);
    assert!(ratio >= 0.14, "hit ratio {ratio:.3}; Belady's is 0.2");
}

#[test]
fn peek_does_not_promote() {
    let clock = MockClock::default();
    let s = one_shard(2, &clock);
    s.put_sync(1, entry("a", &clock)).expect("put");
    s.put_sync(2, entry("b", &clock)).expect("put");
    assert!(s.peek_sync(&1).is_some());
    s.put_sync(3, entry("c", &clock)).expect("put");
    assert!(s.peek_sync(&1).is_none());
}

#[test]
fn replacing_a_key_keeps_one_entry_and_updates_weight() {
    let clock = MockClock::default();
    let s = by_length(10, 100, &clock).build().expect("valid");
    s.put_sync(1, entry("aaaa", &clock)).expect("put");
    s.put_sync(1, entry("bb", &clock)).expect("put");
    assert_eq!(s.len(), 1);
    assert_eq!(s.weight(), 2);
    let st = s.stats();
    assert_eq!((st.inserts, st.updates), (1, 1));
    assert_eq!(
        s.get_sync(&1).and_then(Entry::into_value).as_deref(),
        Some("bb")
    );
}

#[test]
fn weight_bound_evicts_by_weight() {
    let clock = MockClock::default();
    let s = by_length(100, 10, &clock).build().expect("valid");
    s.put_sync(1, entry("aaaa", &clock)).expect("put");
    s.put_sync(2, entry("bbbb", &clock)).expect("put");
    s.put_sync(3, entry("cccc", &clock)).expect("put"); // 12 > 10: evict 1
    assert!(s.peek_sync(&1).is_none());
    assert_eq!(s.weight(), 8);
    assert_eq!(s.stats().evictions(EvictionReason::Weight), 1);
}

#[test]
fn oversized_value_is_refused_and_changes_nothing() {
    let clock = MockClock::default();
    let s = by_length(100, 100, &clock)
        .max_entry_weight(8)
        .build()
        .expect("valid");
    s.put_sync(1, entry("small", &clock)).expect("put");
    let err = s
        .put_sync(1, entry("much too large", &clock))
        .expect_err("refused");
    assert!(matches!(
        err,
        CacheError::InvalidInput(InvalidInput::ValueTooLarge { size: 14, max: 8 })
    ));
    // The old value is still there; nothing was evicted for the refused put.
    assert_eq!(
        s.get_sync(&1).and_then(Entry::into_value).as_deref(),
        Some("small")
    );
    assert_eq!(s.stats().inserts, 1);
}

#[test]
fn over_long_key_is_refused() {
    let s: MemoryStore<String, u8> = MemoryStore::builder()
        .max_key_len(4)
        .build()
        .expect("valid");
    let e = Entry::new(1, cache_core::SystemClock.now(), TTL);
    let err = s.put_sync("abcde".into(), e.clone()).expect_err("too long");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(s.is_empty());
    s.put_sync("abcd".into(), e).expect("fits");
}

#[test]
fn entries_expire_on_the_mock_clock() {
    let clock = MockClock::default();
    let s = one_shard(10, &clock);
    s.put_sync(
        1,
        Entry::new("v".into(), clock.now(), Duration::from_millis(100))
            .with_stale_window(Duration::from_millis(50)),
    )
    .expect("put");
    clock.advance(Duration::from_millis(99));
    assert!(s.get_sync(&1).expect("fresh").is_fresh(clock.now()));
    clock.advance(Duration::from_millis(1));
    let stale = s.get_sync(&1).expect("stale but kept");
    assert!(!stale.is_fresh(clock.now()));
    clock.advance(Duration::from_millis(49));
    assert!(s.get_sync(&1).is_some());
    clock.advance(Duration::from_millis(1));
    assert!(s.get_sync(&1).is_none(), "physically expired");
    assert_eq!(s.len(), 0, "the expired entry was reclaimed when met");
    assert_eq!(s.stats().evictions(EvictionReason::Expired), 1);
}

#[test]
fn max_ttl_caps_every_entry() {
    let clock = MockClock::default();
    let s: MemoryStore<u32, String> = MemoryStore::builder()
        .max_ttl(Duration::from_secs(5))
        .clock(clock.clone())
        .build()
        .expect("valid");
    s.put_sync(
        1,
        Entry::new("v".into(), clock.now(), Duration::from_secs(3600)),
    )
    .expect("put");
    clock.advance(Duration::from_secs(5));
    assert!(s.get_sync(&1).is_none());
}

#[test]
fn already_expired_put_is_not_stored_and_drops_the_old_value() {
    let clock = MockClock::default();
    let s = one_shard(10, &clock);
    s.put_sync(1, entry("old", &clock)).expect("put");
    s.put_sync(1, Entry::new("new".into(), clock.now(), Duration::ZERO))
        .expect("put");
    assert!(s.get_sync(&1).is_none());
    assert!(s.is_empty());
}

#[test]
fn expired_entries_do_not_accumulate() {
    let clock = MockClock::default();
    let s: MemoryStore<u32, String> = MemoryStore::builder()
        .max_entries(1_000_000)
        .clock(clock.clone())
        .build()
        .expect("valid");
    let mut peak = 0;
    // Each round writes 1,000 short-lived entries that are never read again.
    for round in 0..50u32 {
        for i in 0..1_000 {
            s.put_sync(
                round * 1_000 + i,
                Entry::new("x".into(), clock.now(), Duration::from_millis(10)),
            )
            .expect("put");
        }
        clock.advance(Duration::from_millis(20));
        peak = peak.max(s.len());
    }
    // Without reclamation this would be 50,000.
    assert!(peak <= 3_000, "peak {peak} entries held");
    // Everything written so far has expired: an explicit purge leaves nothing.
    let before = s.len();
    assert_eq!(s.purge_expired() as usize, before);
    assert!(s.is_empty());
}

#[test]
fn tag_and_prefix_invalidation() {
    let clock = MockClock::default();
    let s: MemoryStore<(String, u32), u32> = MemoryStore::builder()
        .clock(clock.clone())
        .build()
        .expect("valid");
    let e = |tags: &[&str]| {
        Entry::new(0, clock.now(), TTL)
            .with_tags(tags.iter().copied())
            .expect("tags")
    };
    s.put_sync(("user".into(), 1), e(&["t1"])).expect("put");
    s.put_sync(("user".into(), 2), e(&["t1", "t2"]))
        .expect("put");
    s.put_sync(("users".into(), 3), e(&["t2"])).expect("put");
    s.put_sync(("order".into(), 1), e(&[])).expect("put");
    assert_eq!(s.invalidate_tag_sync("t2"), 2);
    assert_eq!(s.len(), 2);
    // Prefix matching works on the encoded key: `user:` matches `user:1` only.
    s.put_sync(("users".into(), 3), e(&[])).expect("put");
    assert_eq!(s.invalidate_prefix_sync("user:"), 1);
    assert!(s.peek_sync(&("users".into(), 3)).is_some());
    assert!(s.peek_sync(&("order".into(), 1)).is_some());
    assert_eq!(s.stats().removed, 3);
}

#[test]
fn build_rejects_bad_configs() {
    type B = cache_store_memory::MemoryStoreBuilder<u32, u32>;
    let cases: Vec<(&str, B)> = vec![
        ("max_entries", MemoryStore::builder().max_entries(0)),
        ("max_weight", MemoryStore::builder().max_weight(0)),
        (
            "max_entry_weight",
            MemoryStore::builder().max_entry_weight(0),
        ),
        (
            "max_entry_weight",
            MemoryStore::builder().max_weight(10).max_entry_weight(11),
        ),
        (
            "max_entry_weight",
            MemoryStore::builder()
                .max_weight(10)
                .max_entry_weight(6)
                .shards(2),
        ),
        ("shards", MemoryStore::builder().shards(3)),
        ("shards", MemoryStore::builder().max_entries(2).shards(4)),
        ("max_weight", MemoryStore::builder().max_weight(2).shards(4)),
        ("max_ttl", MemoryStore::builder().max_ttl(Duration::ZERO)),
        ("max_key_len", MemoryStore::builder().max_key_len(0)),
    ];
    for (field, b) in cases {
        match b.build() {
            Err(CacheError::Config(c)) => assert_eq!(c.field(), field, "{c}"),
            other => panic!("expected a config error about {field}, got {other:?}"),
        }
    }
}

#[test]
fn default_sharding_keeps_room_for_the_heaviest_entry() {
    let s: MemoryStore<u32, u32> = MemoryStore::builder()
        .max_entries(100_000)
        .max_weight(1_000)
        .max_entry_weight(600)
        .build()
        .expect("valid");
    assert_eq!(s.shard_count(), 1);
    let s: MemoryStore<u32, u32> = MemoryStore::builder()
        .max_entries(100_000)
        .build()
        .expect("valid");
    assert!(s.shard_count() > 1);
    let s: MemoryStore<u32, u32> = MemoryStore::builder().max_entries(10).build().expect("ok");
    assert_eq!(s.shard_count(), 1);
}

#[test]
fn store_trait_contract() {
    let clock = MockClock::default();
    let s: MemoryStore<String, u32> = MemoryStore::builder()
        .max_entry_weight(8)
        .max_weight(1 << 20)
        .weigher(|_, v: &u32| u64::from(*v))
        .clock(clock.clone())
        .build()
        .expect("valid");
    let e = |v| Entry::new(v, clock.now(), TTL);
    now(s.put("a".into(), e(1))).expect("put");
    now(s.put("b".into(), Entry::absent(clock.now(), TTL))).expect("put");
    let got = now(s.get_many(&["a".into(), "b".into(), "c".into()])).expect("get_many");
    assert_eq!(got[0].as_ref().and_then(Entry::value), Some(&1));
    assert!(got[1].as_ref().expect("absent marker").is_absent());
    assert!(got[2].is_none());
    // One bad entry in a batch: nothing from the batch is written.
    let err = now(s.put_many(vec![("x".into(), e(1)), ("y".into(), e(9))])).expect_err("too big");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(s.peek_sync(&"x".into()).is_none());
    assert_eq!(
        now(s.remove_many(&["a".into(), "zz".into()])).expect("rm"),
        1
    );
    assert!(now(s.remove(&"b".into())).expect("rm"));
    let h = now(s.health());
    assert_eq!(h.status, cache_core::HealthStatus::Healthy);
    assert_eq!(h.entries, Some(0));
}

#[test]
fn reads_are_counted_only_when_asked() {
    let clock = MockClock::default();
    for count in [false, true] {
        let s: MemoryStore<u32, String> = MemoryStore::builder()
            .count_reads(count)
            .clock(clock.clone())
            .build()
            .expect("valid");
        s.put_sync(1, entry("v", &clock)).expect("put");
        assert!(s.get_sync(&1).is_some());
        assert!(s.get_sync(&1).is_some());
        assert!(s.get_sync(&2).is_none());
        let st = s.stats();
        let expected = if count { (2, 1) } else { (0, 0) };
        assert_eq!((st.hits, st.misses), expected, "count_reads({count})");
        assert_eq!(st.inserts, 1, "writes are always counted");
    }
}

#[test]
fn a_sharded_store_holds_max_entries_however_the_keys_hash() {
    let clock = MockClock::default();
    let store: MemoryStore<u32, String> = MemoryStore::builder()
        .max_entries(10_000)
        .shards(16)
        .clock(clock.clone())
        .build()
        .expect("valid config");
    for round in 0..3u32 {
        let base = round * 100_000;
        for k in base..base + 10_000 {
            store
                .put_sync(k, Entry::new(k.to_string(), clock.now(), TTL))
                .expect("put");
        }
        // Every key is there: no shard evicted while the store had room.
        assert_eq!(store.len(), 10_000, "round {round}");
        assert!((base..base + 10_000).all(|k| store.peek_sync(&k).is_some()));
        // Past full, the bound holds.
        for k in base + 10_000..base + 12_000 {
            store
                .put_sync(k, Entry::new(k.to_string(), clock.now(), TTL))
                .expect("put");
            assert!(store.len() <= 10_000);
        }
        assert_eq!(store.len(), 10_000);
        // Emptying the store in different ways gives every slot back.
        match round {
            0 => store.clear(),
            1 => assert_eq!(store.remove_where(|_, _| true), 10_000),
            _ => {
                for k in store.keys() {
                    assert!(store.remove_sync(&k));
                }
            }
        }
        assert_eq!(store.len(), 0);
    }
}

#[test]
fn put_each_skips_refused_entries_and_keeps_the_rest() {
    let clock = MockClock::default();
    let store = by_length(10, 100, &clock)
        .max_entry_weight(5)
        .build()
        .expect("valid config");
    let stored = store.put_each_sync([
        (1, entry("a", &clock)),
        (2, entry("far too long", &clock)),
        (3, entry("ccc", &clock)),
        (
            4,
            Entry::new("gone".to_string(), clock.now(), Duration::ZERO),
        ),
    ]);
    // The expired entry counts as handled (like `put_sync`) but is not kept.
    assert_eq!(stored, 3);
    assert_eq!(sorted_keys(&store), vec![1, 3]);
    assert_eq!(store.weight(), 4);
}

#[test]
fn cap_fresh_bounds_freshness_spread_over_the_window_and_keeps_stale_copies() {
    let clock = MockClock::default();
    let store: MemoryStore<u32, String> = MemoryStore::builder()
        .max_entries(1_000)
        .clock(clock.clone())
        .build()
        .expect("valid config");
    for k in 0..200 {
        let e = Entry::new(format!("v{k}"), clock.now(), TTL).with_stale_window(TTL);
        store.put_sync(k, e).expect("put");
    }
    let short = Entry::new("short".to_owned(), clock.now(), Duration::from_secs(2));
    store.put_sync(1_000, short).expect("put");
    let start = clock.now();
    let window = Duration::from_secs(10);
    assert_eq!(store.cap_fresh(window), 200, "the 2 s entry is left alone");
    let mut ends = std::collections::BTreeSet::new();
    for k in 0..200 {
        let e = store.peek_sync(&k).expect("kept");
        let left = e.fresh_until().saturating_duration_since(start);
        assert!(
            left >= window / 2 && left <= window,
            "{left:?} outside the second half of the window"
        );
        assert_eq!(
            e.stale_until(),
            start.saturating_add(TTL + TTL),
            "stale end kept"
        );
        assert_eq!(
            e.value().map(String::as_str),
            Some(format!("v{k}").as_str())
        );
        ends.insert(left);
    }
    assert!(ends.len() > 50, "spread out, not one cliff: {}", ends.len());
    let short = store.peek_sync(&1_000).expect("kept");
    assert_eq!(
        short.fresh_until(),
        start.saturating_add(Duration::from_secs(2))
    );

    // A zero window makes everything stale at once, still servable as stale.
    assert_eq!(store.cap_fresh(Duration::ZERO), 201);
    let now = clock.now();
    let e = store.peek_sync(&7).expect("kept");
    assert!(!e.is_fresh(now) && !e.is_expired(now));
    clock.advance(Duration::from_secs(1));
    assert!(store.get_sync(&7).is_some_and(|e| !e.is_fresh(clock.now())));
}

#[test]
fn a_fresh_read_answers_only_fresh_values_and_counts_every_live_entry() {
    let clock = MockClock::default();
    let store: MemoryStore<u32, String> = MemoryStore::builder()
        .max_entries(100)
        .shards(1)
        .count_reads(true)
        .clock(clock.clone())
        .build()
        .expect("valid config");
    let now = clock.now();
    let stale_later =
        Entry::new("v".to_owned(), now, Duration::from_secs(10)).with_stale_window(TTL);
    store.put_sync(1, stale_later).expect("put");
    store
        .put_sync(2, Entry::absent(now, Duration::from_secs(10)))
        .expect("put");

    assert_eq!(store.get_fresh_sync(&1), Some(Some("v".to_owned())));
    assert_eq!(
        store.get_fresh_sync(&2),
        Some(None),
        "a fresh absent marker"
    );
    assert_eq!(store.get_fresh_sync(&3), None);

    clock.advance(Duration::from_secs(11));
    // Stale: `get_sync` still hands the entry out, the fresh read does not,
    // and both count it as a hit (the key is in use).
    assert!(store.get_sync(&1).is_some());
    assert_eq!(store.get_fresh_sync(&1), None);
    assert_eq!(store.get_fresh_sync(&2), None, "expired");
    let stats = store.stats();
    assert_eq!((stats.hits, stats.misses), (4, 2));

    clock.advance(TTL);
    assert_eq!(store.get_fresh_sync(&1), None);
    assert_eq!(store.len(), 0, "the expired entries found were removed");
}

/// The periodic sweep is skipped while nothing can have expired; entries that
/// end (by their TTL or by going unread past the time to idle) among
/// long-lived ones are still swept once they have.
#[test]
fn idle_and_short_lived_entries_among_long_lived_ones_do_not_accumulate() {
    let clock = MockClock::default();
    let s: MemoryStore<u32, String> = MemoryStore::builder()
        .max_entries(1_000_000)
        .time_to_idle(Duration::from_millis(50))
        .clock(clock.clone())
        .build()
        .expect("valid");
    let hour = Duration::from_secs(3_600);
    // Long-lived and read all along: they never go idle.
    for k in 0..500u32 {
        s.put_sync(k, Entry::new("keep".into(), clock.now(), hour))
            .expect("put");
    }
    let mut peak = 0;
    for round in 0..40u32 {
        for i in 0..1_000 {
            let key = 1_000 + round * 1_000 + i;
            // Half end by TTL, half by going unread (their TTL is an hour).
            let ttl = if i % 2 == 0 {
                Duration::from_millis(10)
            } else {
                hour
            };
            s.put_sync(key, Entry::new("x".into(), clock.now(), ttl))
                .expect("put");
        }
        for _ in 0..2 {
            (0..500u32).for_each(|k| assert!(s.get_sync(&k).is_some(), "key {k}"));
            clock.advance(Duration::from_millis(30));
        }
        peak = peak.max(s.len());
    }
    // Without the sweep this would be 40,500 (as it was when the sweep was due
    // after as many puts as the shard's current length: a shard whose oldest
    // entries live on grows as fast as it is written, so that never came).
    assert!(peak <= 6_000, "peak {peak} entries held");
    let held = s.len();
    assert_eq!(s.purge_expired() as usize, held - 500);
    assert_eq!(s.len(), 500, "the long-lived, read entries stay");
}

/// After `clear()`, a store holds its full bound of new keys however they
/// hash: every shard soon gives back the entry slots it drew from the common
/// pool, even one that swept when it was full and has not swept since.
#[test]
fn a_cleared_store_refills_to_its_bound_however_keys_hash() {
    // Scattered keys, and shard counts up to 64 (what a many-core machine gets
    // by default): with ~31 entries a shard, some shard always hashes below
    // the quota it owns, and its unfilled slots must go to the shards that
    // hash above theirs. (Sequential keys spread too evenly to show it.)
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut scattered = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for shards in [None, Some(16), Some(32), Some(64)] {
        let clock = MockClock::default();
        let mut b = MemoryStore::builder()
            .max_entries(2_000)
            .clock(clock.clone());
        if let Some(n) = shards {
            b = b.shards(n);
        }
        let s: MemoryStore<u64, u64> = b.build().expect("valid");
        let put = |k: u64| {
            s.put_sync(k, Entry::new(k, clock.now(), TTL)).expect("put");
        };
        for round in 0..20u64 {
            // Full, and swept while full (every shard has seen enough puts).
            (0..10_000).for_each(|i| put(round * 1_000_000 + i % 2_600));
            s.clear();
            let fresh: std::collections::HashSet<u64> = (0..2_000).map(|_| scattered()).collect();
            fresh.iter().for_each(|&k| put(k));
            assert_eq!(s.len(), fresh.len(), "{shards:?} shards, round {round}");
            s.clear();
        }
    }
}
