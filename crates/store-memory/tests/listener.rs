//! The eviction listener and time to idle: every entry that leaves is heard
//! once, with its cause, outside the lock; idle entries leave on the mock clock.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cache_core::{Clock, Entry, MockClock};
use cache_store_memory::{MemoryStore, RemovalCause};
use proptest::prelude::*;

type Heard = Arc<Mutex<Vec<(u32, Option<String>, RemovalCause)>>>;

fn listening(clock: &MockClock, cap: usize) -> (MemoryStore<u32, String>, Heard) {
    let heard: Heard = Arc::default();
    let log = heard.clone();
    let store = MemoryStore::builder()
        .max_entries(cap)
        .shards(1)
        .clock(clock.clone())
        .eviction_listener(move |k, v, cause| log.lock().expect("lock").push((k, v, cause)))
        .build()
        .expect("valid config");
    (store, heard)
}

fn entry(v: &str, clock: &MockClock, ttl: Duration) -> Entry<String> {
    Entry::new(v.to_owned(), clock.now(), ttl)
}

fn take(heard: &Heard) -> Vec<(u32, Option<String>, RemovalCause)> {
    std::mem::take(&mut *heard.lock().expect("lock"))
}

#[test]
fn every_cause_is_heard_with_the_key_and_value() {
    let clock = MockClock::default();
    let (store, heard) = listening(&clock, 2);
    let ttl = Duration::from_secs(10);
    store.put_sync(1, entry("a", &clock, ttl)).expect("put");
    store.put_sync(1, entry("b", &clock, ttl)).expect("put");
    assert_eq!(
        take(&heard),
        [(1, Some("a".into()), RemovalCause::Replaced)]
    );

    store.put_sync(2, entry("c", &clock, ttl)).expect("put");
    store.put_sync(3, entry("d", &clock, ttl)).expect("put");
    let size = take(&heard);
    assert_eq!(size.len(), 1, "{size:?}");
    assert_eq!(size[0].2, RemovalCause::Size);

    assert!(store.remove_sync(&3));
    assert_eq!(
        take(&heard),
        [(3, Some("d".into()), RemovalCause::Explicit)]
    );

    clock.advance(ttl);
    assert_eq!(store.purge_expired(), 1, "key 1 or 2, whichever stayed");
    assert!(
        take(&heard)
            .iter()
            .all(|(_, _, c)| *c == RemovalCause::Expired)
    );

    store
        .put_sync(4, entry("e", &clock, ttl).with_tags(["t"]).expect("tag"))
        .expect("put");
    store
        .put_sync(5, Entry::absent(clock.now(), ttl))
        .expect("put");
    assert_eq!(store.invalidate_tag_sync("t"), 1);
    store.clear();
    assert_eq!(
        take(&heard),
        [
            (4, Some("e".into()), RemovalCause::Explicit),
            (5, None, RemovalCause::Explicit)
        ]
    );
}

#[test]
fn the_listener_may_use_the_store() {
    static STORE: OnceLock<MemoryStore<u32, String>> = OnceLock::new();
    let clock = MockClock::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let store = STORE.get_or_init(|| {
        MemoryStore::builder()
            .max_entries(1)
            .shards(1)
            .clock(clock.clone())
            .eviction_listener(move |k, _, _| {
                // Re-entering the store from the listener must not deadlock.
                let len = STORE.get().map(MemoryStore::len);
                log.lock().expect("lock").push((k, len));
            })
            .build()
            .expect("valid config")
    });
    let ttl = Duration::from_secs(10);
    store.put_sync(1, entry("a", &clock, ttl)).expect("put");
    store.put_sync(2, entry("b", &clock, ttl)).expect("put");
    store.remove_sync(&2);
    assert_eq!(*seen.lock().expect("lock"), [(1, Some(1)), (2, Some(0))]);
}

#[test]
fn idle_entries_leave_and_reads_keep_them() {
    let clock = MockClock::default();
    let heard: Heard = Arc::default();
    let log = heard.clone();
    let store = MemoryStore::<u32, String>::builder()
        .time_to_idle(Duration::from_secs(5))
        .clock(clock.clone())
        .eviction_listener(move |k, v, cause| log.lock().expect("lock").push((k, v, cause)))
        .build()
        .expect("valid config");
    assert_eq!(store.time_to_idle(), Some(Duration::from_secs(5)));
    let ttl = Duration::from_secs(60);
    store.put_sync(1, entry("read", &clock, ttl)).expect("put");
    store
        .put_sync(2, entry("left alone", &clock, ttl))
        .expect("put");
    for _ in 0..4 {
        clock.advance(Duration::from_secs(4));
        assert!(store.get_sync(&1).is_some(), "each read resets the wait");
        assert!(store.peek_sync(&2).is_some() || clock.now().as_millis() >= 5_000);
    }
    assert!(store.peek_sync(&2).is_none(), "idle for 16 s");
    assert!(store.get_sync(&2).is_none());
    assert_eq!(
        take(&heard),
        [(2, Some("left alone".into()), RemovalCause::Expired)]
    );
    // The TTL still ends a key read all the time.
    for _ in 0..15 {
        clock.advance(Duration::from_secs(4));
        let _ = store.get_sync(&1);
    }
    assert!(store.get_sync(&1).is_none());
    assert!(
        MemoryStore::<u32, String>::builder()
            .time_to_idle(Duration::ZERO)
            .build()
            .is_err()
    );
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8),
    Remove(u8),
    Tag,
    Advance(u8),
    Read(u8),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<u8>().prop_map(|k| Op::Put(k % 40)),
        2 => any::<u8>().prop_map(|k| Op::Remove(k % 40)),
        1 => Just(Op::Tag),
        2 => (0u8..30).prop_map(Op::Advance),
        3 => any::<u8>().prop_map(|k| Op::Read(k % 40)),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    /// Every entry stored either is still held or was heard leaving, exactly
    /// once: puts = entries held + removals heard.
    #[test]
    fn every_stored_entry_is_held_or_heard_once(ops in proptest::collection::vec(op(), 1..300)) {
        let clock = MockClock::default();
        let heard: Heard = Arc::default();
        let log = heard.clone();
        let store = MemoryStore::<u32, String>::builder()
            .max_entries(16)
            .shards(2)
            .time_to_idle(Duration::from_secs(20))
            .clock(clock.clone())
            .eviction_listener(move |k, v, cause| log.lock().expect("lock").push((k, v, cause)))
            .build()
            .expect("valid config");
        let mut puts = 0usize;
        for op in &ops {
            match op {
                Op::Put(k) => {
                    let e = Entry::new(format!("v{k}"), clock.now(), Duration::from_secs(30));
                    let e = if k % 3 == 0 { e.with_tags(["t"]).expect("tag") } else { e };
                    store.put_sync(u32::from(*k), e).expect("put");
                    puts += 1;
                }
                Op::Remove(k) => { store.remove_sync(&u32::from(*k)); }
                Op::Tag => { store.invalidate_tag_sync("t"); }
                Op::Advance(s) => clock.advance(Duration::from_secs(u64::from(*s))),
                Op::Read(k) => { let _ = store.get_sync(&u32::from(*k)); }
                Op::Clear => store.clear(),
            }
        }
        let heard = heard.lock().expect("lock");
        prop_assert_eq!(puts, store.len() + heard.len());
        let intact = heard.iter().all(|(k, v, _)| *v == Some(format!("v{k}")));
        prop_assert!(intact, "every value heard is the key's own");
    }
}
