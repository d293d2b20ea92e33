//! Property tests: the bounds always hold, and whatever the eviction policy
//! chose to keep, a store answers only what was last written for a key, never
//! an expired or removed entry. (The policy's choices are tested in the shard's
//! unit tests and measured on real traces by `cargo xtask bench`.)

use std::collections::HashMap;
use std::time::Duration;

use cache_core::{Clock, Entry, MockClock, Timestamp};
use cache_store_memory::MemoryStore;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put { key: u8, weight: u8, ttl_ms: u16 },
    Get { key: u8 },
    Remove { key: u8 },
    Advance { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, 0u8..12, 1u16..400).prop_map(|(key, weight, ttl_ms)| Op::Put { key, weight, ttl_ms }),
        4 => (0u8..24).prop_map(|key| Op::Get { key }),
        1 => (0u8..24).prop_map(|key| Op::Remove { key }),
        1 => (0u16..200).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// What was last written for each key, and until when it lives: whatever the
/// store chose to evict, what it still answers must be this.
#[derive(Default)]
struct Model {
    live: HashMap<u8, (u8, Timestamp)>,
}

impl Model {
    fn put(&mut self, key: u8, weight: u8, expiry: Timestamp) {
        self.live.insert(key, (weight, expiry));
    }
    fn remove(&mut self, key: u8) {
        self.live.remove(&key);
    }
    /// The value a read at `now` may return, if any.
    fn readable(&self, key: u8, now: Timestamp) -> Option<u8> {
        self.live
            .get(&key)
            .and_then(|&(v, expiry)| (now < expiry).then_some(v))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn one_shard_answers_only_what_was_written_and_stays_bounded(
        max_entries in 1usize..12,
        max_weight in 12u64..60,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let clock = MockClock::default();
        let store: MemoryStore<u8, u8> = MemoryStore::builder()
            .max_entries(max_entries)
            .max_weight(max_weight)
            .shards(1)
            .weigher(|_, w: &u8| u64::from(*w))
            .clock(clock.clone())
            .build()
            .expect("valid");
        let mut model = Model::default();
        for op in ops {
            let now = clock.now();
            match op {
                Op::Put { key, weight, ttl_ms } => {
                    let e = Entry::new(weight, now, Duration::from_millis(u64::from(ttl_ms)));
                    store.put_sync(key, e).expect("within limits");
                    model.put(key, weight, now.saturating_add(Duration::from_millis(u64::from(ttl_ms))));
                    // The entry just written is held (it fits on its own).
                    prop_assert_eq!(store.peek_sync(&key).and_then(Entry::into_value), Some(weight));
                }
                Op::Get { key } => {
                    let got = store.get_sync(&key).and_then(Entry::into_value);
                    if got.is_some() {
                        prop_assert_eq!(got, model.readable(key, now), "get {}", key);
                    }
                }
                Op::Remove { key } => {
                    let removed = store.remove_sync(&key);
                    prop_assert!(!removed || model.live.contains_key(&key), "removed {} that was never written", key);
                    model.remove(key);
                    prop_assert!(store.peek_sync(&key).is_none());
                }
                Op::Advance { ms } => clock.advance(Duration::from_millis(u64::from(ms))),
            }
            prop_assert!(store.len() <= max_entries);
            prop_assert!(store.weight() <= max_weight);
            // Everything held was written and not removed since.
            for k in store.keys() {
                prop_assert!(model.live.contains_key(&k), "holds {} that was removed", k);
            }
        }
        let st = store.stats();
        prop_assert_eq!(st.entries as usize, store.len());
    }

    #[test]
    fn bounds_hold_with_many_shards(
        max_entries in 16usize..200,
        ops in proptest::collection::vec((any::<u16>(), 0u64..40), 1..600),
    ) {
        let store: MemoryStore<u16, u64> = MemoryStore::builder()
            .max_entries(max_entries)
            .max_weight(400)
            .max_entry_weight(40)
            .shards(8)
            .weigher(|_, w: &u64| *w)
            .build()
            .expect("valid");
        let now = cache_core::SystemClock.now();
        for (key, w) in ops {
            store.put_sync(key, Entry::new(w, now, Duration::from_secs(60))).expect("fits");
            prop_assert!(store.len() <= max_entries);
            prop_assert!(store.weight() <= 400);
            // The entry just written is there (it fits in its shard on its own).
            prop_assert_eq!(store.peek_sync(&key).and_then(Entry::into_value), Some(w));
        }
        let st = store.stats();
        prop_assert_eq!(st.entries as usize, store.len());
        prop_assert_eq!(st.inserts, st.entries + st.evicted_capacity + st.evicted_weight + st.expired + st.removed);
    }
}
