//! Property tests: the bounds always hold, and a one-shard store behaves exactly
//! like a simple reference LRU model (count + weight bounds, TTL, remove).

use std::collections::VecDeque;
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

/// The reference: a list ordered from most to least recently used.
struct Model {
    items: VecDeque<(u8, u8, Timestamp)>, // key, weight, expiry
    max_entries: usize,
    max_weight: u64,
    puts_since_sweep: usize,
}

impl Model {
    fn weight(&self) -> u64 {
        self.items.iter().map(|i| u64::from(i.1)).sum()
    }
    fn take(&mut self, key: u8) -> Option<(u8, u8, Timestamp)> {
        let pos = self.items.iter().position(|i| i.0 == key)?;
        self.items.remove(pos)
    }
    fn get(&mut self, key: u8, now: Timestamp) -> Option<u8> {
        let item = self.take(key)?;
        if now >= item.2 {
            return None; // expired: removed, miss
        }
        self.items.push_front(item);
        Some(item.1)
    }
    fn put(&mut self, key: u8, weight: u8, expiry: Timestamp, now: Timestamp) {
        self.take(key);
        if now >= expiry {
            return;
        }
        self.items.push_front((key, weight, expiry));
        // The store drops up to two expired entries from the cold end first.
        for _ in 0..2 {
            match self.items.back() {
                Some(last) if now >= last.2 => {
                    self.items.pop_back();
                }
                _ => break,
            }
        }
        while self.items.len() > self.max_entries {
            self.items.pop_back();
        }
        while self.weight() > self.max_weight {
            self.items.pop_back();
        }
        // ... and sweeps all expired entries every max(len, 64) puts.
        self.puts_since_sweep += 1;
        if self.puts_since_sweep >= self.items.len().max(64) {
            self.puts_since_sweep = 0;
            self.items.retain(|i| now < i.2);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn one_shard_agrees_with_the_reference_lru(
        max_entries in 1usize..12,
        max_weight in 12u64..60,
        ops in proptest::collection::vec(op(), 1..200),
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
        let mut model = Model { items: VecDeque::new(), max_entries, max_weight, puts_since_sweep: 0 };
        for op in ops {
            let now = clock.now();
            match op {
                Op::Put { key, weight, ttl_ms } => {
                    let e = Entry::new(weight, now, Duration::from_millis(u64::from(ttl_ms)));
                    store.put_sync(key, e).expect("within limits");
                    model.put(key, weight, now.saturating_add(Duration::from_millis(u64::from(ttl_ms))), now);
                }
                Op::Get { key } => {
                    let got = store.get_sync(&key).and_then(Entry::into_value);
                    prop_assert_eq!(got, model.get(key, now), "get {}", key);
                }
                Op::Remove { key } => {
                    prop_assert_eq!(store.remove_sync(&key), model.take(key).is_some());
                }
                Op::Advance { ms } => clock.advance(Duration::from_millis(u64::from(ms))),
            }
            prop_assert!(store.len() <= max_entries);
            prop_assert!(store.weight() <= max_weight);
        }
        // Same contents, same recency order (expired-but-unreclaimed included).
        let keys: Vec<u8> = model.items.iter().map(|i| i.0).collect();
        prop_assert_eq!(store.keys(), keys);
        prop_assert_eq!(store.weight(), model.weight());
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
