//! The L1 hit path allocates nothing (counted by a global allocator wrapper).

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Clock, Entry, MockClock};
use cache_store_memory::MemoryStore;

#[test]
fn a_hit_allocates_nothing() {
    let clock = MockClock::default();
    let store: MemoryStore<(u64, u32), Arc<String>> = MemoryStore::builder()
        .max_entries(1_000)
        .clock(clock.clone())
        .build()
        .expect("valid");
    let value = Arc::new("payload".repeat(10));
    let tagged = Entry::new(Arc::clone(&value), clock.now(), Duration::from_secs(60))
        .with_tags(["a", "b"])
        .expect("tags");
    store.put_sync((7, 1), tagged).expect("put");
    assert!(store.get_sync(&(7, 1)).is_some()); // warm up

    let counts = allocation_counter::measure(|| {
        for _ in 0..1_000 {
            let hit = store.get_sync(&(7, 1));
            assert!(hit.is_some());
            let value = store.get_fresh_sync(&(7, 1));
            assert!(matches!(value, Some(Some(_))));
        }
    });
    assert_eq!(counts.count_total, 0, "the hit path allocated: {counts:?}");

    // The counter does see allocations (the test can fail).
    // (Enough new keys that every shard's table and links must grow.)
    let counts = allocation_counter::measure(|| {
        for k in 8..200 {
            store
                .put_sync(
                    (k, 1),
                    Entry::new(Arc::clone(&value), clock.now(), Duration::from_secs(1)),
                )
                .expect("put");
        }
    });
    assert!(counts.count_total > 0);
}
