//! Property tests: the bounds always hold, and a one-shard store behaves exactly
//! like a plain reference model of S3-FIFO (small and main FIFO queues, a ghost
//! of recent evictions, read counters; count + weight bounds, TTL, remove).

use std::collections::{HashMap, VecDeque};
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

#[derive(Debug, Clone, Copy)]
struct Item {
    key: u8,
    weight: u8,
    expiry: Timestamp,
    freq: u8,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Q {
    Small,
    Main,
}

/// The reference, written for clarity: queues are `VecDeque`s searched linearly.
struct Model {
    small: VecDeque<Item>,
    main: VecDeque<Item>,
    ghost_ring: VecDeque<(u8, u64)>,
    ghost: HashMap<u8, u64>,
    seq: u64,
    max_entries: usize,
    max_weight: u64,
    puts_since_sweep: usize,
}

impl Model {
    fn new(max_entries: usize, max_weight: u64) -> Self {
        Model {
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost_ring: VecDeque::new(),
            ghost: HashMap::new(),
            seq: 0,
            max_entries,
            max_weight,
            puts_since_sweep: 0,
        }
    }
    fn len(&self) -> usize {
        self.small.len() + self.main.len()
    }
    fn weight(&self) -> u64 {
        self.small
            .iter()
            .chain(&self.main)
            .map(|i| u64::from(i.weight))
            .sum()
    }
    fn small_weight(&self) -> u64 {
        self.small.iter().map(|i| u64::from(i.weight)).sum()
    }
    fn queue(&mut self, q: Q) -> &mut VecDeque<Item> {
        match q {
            Q::Small => &mut self.small,
            Q::Main => &mut self.main,
        }
    }
    fn take(&mut self, key: u8) -> Option<(Q, Item)> {
        for q in [Q::Small, Q::Main] {
            let queue = self.queue(q);
            if let Some(pos) = queue.iter().position(|i| i.key == key) {
                return queue.remove(pos).map(|i| (q, i));
            }
        }
        None
    }
    fn ghost_add(&mut self, key: u8) {
        self.seq += 1;
        self.ghost.insert(key, self.seq);
        self.ghost_ring.push_back((key, self.seq));
        while self.ghost_ring.len() > self.max_entries {
            if let Some((k, s)) = self.ghost_ring.pop_front()
                && self.ghost.get(&k) == Some(&s)
            {
                self.ghost.remove(&k);
            }
        }
    }
    fn get(&mut self, key: u8, now: Timestamp) -> Option<u8> {
        for q in [Q::Small, Q::Main] {
            let queue = self.queue(q);
            if let Some(pos) = queue.iter().position(|i| i.key == key) {
                if now >= queue[pos].expiry {
                    queue.remove(pos); // expired: removed, a miss
                    return None;
                }
                queue[pos].freq = (queue[pos].freq + 1).min(3);
                return Some(queue[pos].weight);
            }
        }
        None
    }
    fn evict(&mut self, now: Timestamp) {
        let small_entries = (self.max_entries / 10).max(1);
        let small_weight = (self.max_weight / 100 * 10).max(1);
        let mut from_small = !self.small.is_empty()
            && (self.small.len() > small_entries
                || self.small_weight() > small_weight
                || self.main.is_empty());
        loop {
            from_small &= !self.small.is_empty();
            let q = if from_small { Q::Small } else { Q::Main };
            let Some(mut head) = self.queue(q).pop_front() else {
                return;
            };
            let expired = now >= head.expiry;
            if !expired && from_small && head.freq >= 1 {
                head.freq = 0;
                self.main.push_back(head);
            } else if !expired && !from_small && head.freq > 0 {
                head.freq -= 1;
                self.main.push_back(head);
            } else {
                if from_small && !expired {
                    self.ghost_add(head.key);
                }
                return;
            }
        }
    }
    fn put(&mut self, key: u8, weight: u8, expiry: Timestamp, now: Timestamp) {
        if now >= expiry {
            self.take(key);
            return;
        }
        let (q, freq) = match self.take(key) {
            Some((q, old)) => (q, (old.freq + 1).min(3)),
            None if self.ghost.remove(&key).is_some() => (Q::Main, 0),
            None => (Q::Small, 0),
        };
        // Up to two rounds of dropping expired heads (small, then main).
        for _ in 0..2 {
            let mut dropped = false;
            for q in [Q::Small, Q::Main] {
                let queue = self.queue(q);
                if queue.front().is_some_and(|h| now >= h.expiry) {
                    queue.pop_front();
                    dropped = true;
                }
            }
            if !dropped {
                break;
            }
        }
        while self.len() >= self.max_entries && self.len() > 0 {
            self.evict(now);
        }
        while self.weight() + u64::from(weight) > self.max_weight && self.len() > 0 {
            self.evict(now);
        }
        self.queue(q).push_back(Item {
            key,
            weight,
            expiry,
            freq,
        });
        // ... and a sweep of all expired entries every max(len, 64) puts.
        self.puts_since_sweep += 1;
        if self.puts_since_sweep >= self.len().max(64) {
            self.puts_since_sweep = 0;
            self.small.retain(|i| now < i.expiry);
            self.main.retain(|i| now < i.expiry);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn one_shard_agrees_with_the_reference_model(
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
        let mut model = Model::new(max_entries, max_weight);
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
                    prop_assert_eq!(store.remove_sync(&key), model.take(key).is_some(), "remove {}", key);
                }
                Op::Advance { ms } => clock.advance(Duration::from_millis(u64::from(ms))),
            }
            prop_assert!(store.len() <= max_entries);
            prop_assert!(store.weight() <= max_weight);
        }
        // Same contents (expired-but-unreclaimed included).
        let mut keys: Vec<u8> = model.small.iter().chain(&model.main).map(|i| i.key).collect();
        keys.sort_unstable();
        let mut held = store.keys();
        held.sort_unstable();
        prop_assert_eq!(held, keys);
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
