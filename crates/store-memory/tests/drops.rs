//! Without an eviction listener, the key and value a put evicts or replaces,
//! or a removal, a `remove_where` or a `clear` takes out, are dropped after
//! the shard's lock is released: a destructor that reads the store (or merely
//! takes long) does not run while the shard's readers wait. Each scenario runs on its own thread and fails
//! if it has not finished in time, which is what a destructor run under the
//! lock does (it waits for the lock its own thread holds).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cache_core::{Clock, Entry, SystemClock};
use cache_store_memory::MemoryStore;

type Store = MemoryStore<u32, Probe>;

/// A value whose destructor reads the store it lived in (a key that is never
/// there, so nothing is cloned and dropped in turn) and counts itself.
#[derive(Clone)]
struct Probe {
    store: Weak<Store>,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(store) = self.store.upgrade() {
            assert!(store.get_sync(&u32::MAX).is_none());
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// One shard, so the destructor's read needs the very lock the write took.
fn store(cap: usize) -> Arc<Store> {
    Arc::new(
        MemoryStore::builder()
            .max_entries(cap)
            .shards(1)
            .build()
            .expect("valid config"),
    )
}

fn put(store: &Arc<Store>, key: u32, dropped: &Arc<AtomicUsize>) {
    let probe = Probe {
        store: Arc::downgrade(store),
        dropped: dropped.clone(),
    };
    let entry = Entry::new(probe, SystemClock.now(), Duration::from_secs(60));
    store.put_sync(key, entry).expect("put");
}

/// A one-shard store of `cap` entries after puts of keys `0..keys`, and the
/// count of its values dropped so far.
fn filled(cap: usize, keys: u32) -> (Arc<Store>, Arc<AtomicUsize>) {
    let (store, dropped) = (store(cap), Arc::new(AtomicUsize::new(0)));
    for key in 0..keys {
        put(&store, key, &dropped);
    }
    (store, dropped)
}

/// Runs `scenario` on a thread of its own; fails if it does not finish
/// within ten seconds (it would hang on the shard's lock otherwise).
fn finishes(name: &str, scenario: impl FnOnce() -> usize + Send + 'static) -> usize {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(scenario());
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{name}: a destructor ran under the shard's lock"))
}

#[test]
fn an_evicted_value_is_dropped_outside_the_lock() {
    let dropped = finishes("eviction", || {
        let (store, dropped) = filled(2, 10);
        // Eight puts evicted one entry each; two entries are held.
        assert_eq!(store.len(), 2);
        dropped.load(Ordering::SeqCst)
    });
    assert_eq!(dropped, 8, "every evicted value dropped once");
}

#[test]
fn a_replaced_value_is_dropped_outside_the_lock() {
    let dropped = finishes("replacement", || {
        let (store, dropped) = (store(4), Arc::new(AtomicUsize::new(0)));
        for _ in 0..5 {
            put(&store, 1, &dropped);
        }
        dropped.load(Ordering::SeqCst)
    });
    assert_eq!(dropped, 4, "every replaced value dropped once");
}

#[test]
fn a_removed_value_is_dropped_outside_the_lock() {
    let dropped = finishes("removal", || {
        let (store, dropped) = filled(4, 2);
        assert!(store.remove_sync(&1));
        dropped.load(Ordering::SeqCst)
    });
    assert_eq!(dropped, 1);
}

#[test]
fn cleared_values_are_dropped_outside_the_lock() {
    let dropped = finishes("clear", || {
        let (store, dropped) = filled(8, 5);
        store.clear();
        assert!(store.is_empty());
        dropped.load(Ordering::SeqCst)
    });
    assert_eq!(dropped, 5);
}

#[test]
fn values_removed_by_a_predicate_are_dropped_outside_the_lock() {
    let dropped = finishes("remove_where", || {
        let (store, dropped) = filled(16, 10);
        assert_eq!(store.remove_where(|k, _| k % 2 == 0), 5);
        assert_eq!(store.len(), 5);
        dropped.load(Ordering::SeqCst)
    });
    assert_eq!(dropped, 5);
}
