//! A short tour of the in-memory L1: bounds, LRU eviction, TTL and stale windows,
//! negative caching, tag invalidation, and the counters.
//!
//! Run with `cargo run -p cache-store-memory --example tour`.

use std::time::Duration;

use cache_core::{Clock, Entry, MockClock};
use cache_store_memory::{EvictionReason, MemoryStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Time is injected, so the tour can jump forward without sleeping.
    let clock = MockClock::default();
    let l1 = MemoryStore::<String, String>::builder()
        .count_reads(true)
        .max_entries(1_000)
        .max_weight(64 * 1024)
        .weigher(|k: &String, v: &String| (k.len() + v.len()) as u64)
        .clock(clock.clone())
        .build()?;
    println!("built {l1:?}");

    // 2,000 writes into a store bounded at 1,000 entries.
    for i in 0..2_000 {
        let e = Entry::new(
            format!("profile #{i}"),
            clock.now(),
            Duration::from_secs(60),
        )
        .with_stale_window(Duration::from_secs(300))
        .with_tags([format!("team:{}", i % 10)])?;
        l1.put_sync(format!("user:{i}"), e)?;
    }
    println!(
        "after 2,000 writes: {} entries, {} bytes",
        l1.len(),
        l1.weight()
    );

    // Tag invalidation: every entry tagged team:3 goes at once.
    let removed = l1.invalidate_tag_sync("team:3");
    println!(
        "invalidated tag team:3: {removed} entries, {} left",
        l1.len()
    );

    // Negative caching: remember that a key does not exist.
    l1.put_sync(
        "user:missing".into(),
        Entry::absent(clock.now(), Duration::from_secs(10)),
    )?;
    let miss = l1.get_sync(&"user:missing".into());
    println!(
        "user:missing cached as absent: {}",
        miss.is_some_and(|e| e.is_absent())
    );

    // Fresh, then stale (still servable if the source fails), then gone.
    let key = "user:1999".to_string();
    clock.advance(Duration::from_secs(90));
    let e = l1
        .get_sync(&key)
        .ok_or("user:1999 should be kept while stale")?;
    println!(
        "after 90 s user:1999 is fresh={} (stale but kept for fail-safe)",
        e.is_fresh(clock.now())
    );
    clock.advance(Duration::from_secs(300));
    println!(
        "after 390 s user:1999 present={}",
        l1.get_sync(&key).is_some()
    );

    let s = l1.stats();
    println!(
        "stats: hits={} misses={} evicted(capacity)={} evicted(weight)={} expired={} removed={}",
        s.hits,
        s.misses,
        s.evictions(EvictionReason::Capacity),
        s.evictions(EvictionReason::Weight),
        s.evictions(EvictionReason::Expired),
        s.evictions(EvictionReason::Removed),
    );
    Ok(())
}
