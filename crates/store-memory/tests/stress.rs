//! Many threads hammer one store; bounds and counters stay consistent.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use cache_core::{Clock, Entry, MockClock};
use cache_store_memory::MemoryStore;

#[test]
fn concurrent_mixed_workload_keeps_invariants() {
    mixed_workload(None);
}

/// 64 shards of ~31 entries (the default on a machine with 16 or more cores):
/// shards keep hashing below and above their owned quotas, so slots move
/// between them (pool and lending) while four threads write and remove.
#[test]
fn concurrent_mixed_workload_keeps_invariants_with_many_small_shards() {
    mixed_workload(Some(64));
}

fn mixed_workload(shards: Option<usize>) {
    let clock = MockClock::default();
    let mut builder = MemoryStore::builder()
        .count_reads(true)
        .max_entries(2_000)
        .max_weight(20_000)
        .weigher(|_, v: &u64| 1 + v % 16)
        .clock(clock.clone());
    if let Some(n) = shards {
        builder = builder.shards(n);
    }
    let store: Arc<MemoryStore<u64, u64>> = Arc::new(builder.build().expect("valid"));
    let threads = 4;
    let ops_per_thread = 50_000u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            let clock = clock.clone();
            thread::spawn(move || {
                let mut gets = 0u64;
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                for i in 0..ops_per_thread {
                    // xorshift: a cheap deterministic key stream per thread.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = x % 5_000;
                    match i % 10 {
                        0..=5 => {
                            gets += 1;
                            if let Some(e) = store.get_sync(&key) {
                                // A value is always the one written for its key.
                                assert_eq!(e.value().copied(), Some(key * 3));
                            }
                        }
                        6..=8 => store
                            .put_sync(
                                key,
                                Entry::new(key * 3, clock.now(), Duration::from_millis(500)),
                            )
                            .expect("fits"),
                        _ => {
                            store.remove_sync(&key);
                        }
                    }
                    if t == 0 && i % 5_000 == 0 {
                        clock.advance(Duration::from_millis(100));
                    }
                }
                gets
            })
        })
        .collect();
    let total_gets: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("no panic"))
        .sum();
    let st = store.stats();
    assert!(store.len() <= 2_000);
    assert!(store.weight() <= 20_000);
    assert_eq!(st.hits + st.misses, total_gets);
    assert!(st.hits > 0 && st.misses > 0);
    assert_eq!(
        st.inserts,
        st.entries + st.evicted_capacity + st.evicted_weight + st.expired + st.removed
    );
    // The shards gave back every entry slot they drew from the common pool,
    // and lend what they own but do not fill: an emptied store holds its full
    // bound of fresh, scattered keys again (each of weight 1).
    store.clear();
    let mut x = 0x0123_4567_89AB_CDEFu64;
    let mut fresh = std::collections::HashSet::new();
    while fresh.len() < 2_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        fresh.insert(x - x % 16);
    }
    for &k in &fresh {
        store
            .put_sync(k, Entry::new(k, clock.now(), Duration::from_secs(60)))
            .expect("put");
    }
    assert_eq!(store.len(), 2_000);
}
