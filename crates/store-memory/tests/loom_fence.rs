//! loom model of fenced fills: readers take a fence, read a versioned source
//! and fill; a writer changes the source and then invalidates the key (a
//! removal, a replacing `set`, emptying the store). Whatever the
//! interleaving, once everyone is done L1 never holds the version the writer
//! replaced. Run with
//! `RUSTFLAGS="--cfg cache_loom" cargo test --release -p cache-store-memory --test loom_fence`
//! (`cargo xtask test` does).
#![cfg(cache_loom)]

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use cache_core::{Clock, Entry, MockClock};
use cache_store_memory::MemoryStore;
use loom::sync::atomic::AtomicU64;
use loom::thread;

const KEY: u64 = 7;
const OLD: u64 = 1;
const NEW: u64 = 2;

type Invalidate = fn(&MemoryStore<u64, u64>, Entry<u64>);

fn store(clock: &MockClock) -> MemoryStore<u64, u64> {
    MemoryStore::builder()
        .shards(1)
        .max_entries(64)
        .clock(clock.clone())
        .build()
        .expect("valid config")
}

/// `readers` readers and one writer; returns nothing, asserts the outcome.
fn model(readers: usize, invalidate: Invalidate, newest_kept: bool) {
    loom::model(move || {
        let clock = MockClock::default();
        let l1 = Arc::new(store(&clock));
        let source = Arc::new(AtomicU64::new(OLD));
        let entry = {
            let clock = clock.clone();
            move |v| Entry::new(v, clock.now(), Duration::from_secs(60))
        };
        let mut threads = Vec::new();
        for _ in 0..readers {
            let (l1, source, entry) = (l1.clone(), source.clone(), entry.clone());
            threads.push(thread::spawn(move || {
                let since = l1.fence();
                let v = source.load(SeqCst);
                // Refused or stored; either is allowed, the outcome decides.
                let _ = l1.put_since_sync(KEY, entry(v), since).expect("fits");
            }));
        }
        source.store(NEW, SeqCst);
        invalidate(&l1, entry(NEW));
        for t in threads {
            t.join().expect("reader");
        }
        let held = l1.get_sync(&KEY).and_then(Entry::into_value);
        assert_ne!(held, Some(OLD), "the replaced version came back");
        if newest_kept {
            assert_eq!(held, Some(NEW), "the set was overwritten");
        }
    });
}

#[test]
fn a_removal_racing_a_reader() {
    model(
        1,
        |l1, _| {
            l1.remove_sync(&KEY);
        },
        false,
    );
}

#[test]
fn a_removal_racing_two_readers() {
    model(
        2,
        |l1, _| {
            l1.remove_sync(&KEY);
        },
        false,
    );
}

#[test]
fn a_set_racing_a_reader() {
    model(1, |l1, e| l1.put_fencing_sync(KEY, e).expect("fits"), true);
}

#[test]
fn emptying_the_store_racing_a_reader() {
    model(1, |l1, _| l1.clear(), false);
}
