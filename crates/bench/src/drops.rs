//! `cache-bench --drop-probe [PARTS]`: how a shard's readers fare while a
//! writer evicts values with costly destructors. One shard of 64 entries; a
//! writer thread stores new keys whose values are `PARTS` separate 64-byte
//! buffers (each eviction frees them all), while this thread reads one hot
//! key for two seconds. Prints the reads per second, the slowest read and the
//! reads over 20 µs: what a destructor run under the shard's lock costs the
//! readers (the store drops what a write takes out after releasing the lock).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Clock, Entry, SystemClock};
use cache_store_memory::MemoryStore;

type Value = Vec<Vec<u8>>;

pub(crate) fn drop_probe(args: &[String]) -> ExitCode {
    let parts: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let Ok(store) = MemoryStore::<u32, Value>::builder()
        .max_entries(64)
        .shards(1)
        .build()
    else {
        eprintln!("the probe's store did not build");
        return ExitCode::FAILURE;
    };
    let store = Arc::new(store);
    let ttl = Duration::from_secs(600);
    let value = |n: usize| -> Value { (0..n).map(|_| vec![7u8; 64]).collect() };
    if store
        .put_sync(0, Entry::new(value(1), SystemClock.now(), ttl))
        .is_err()
    {
        eprintln!("the hot key was refused");
        return ExitCode::FAILURE;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut key, mut puts) = (1u32, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let _ = store.put_sync(key, Entry::new(value(parts), SystemClock.now(), ttl));
                // Keeps the hot key read, so eviction passes it by.
                let _ = store.get_fresh_sync(&0);
                key = key % 1_000_000 + 1;
                puts += 1;
            }
            puts
        })
    };
    let run = Duration::from_secs(2);
    let start = Instant::now();
    let (mut reads, mut slow, mut worst) = (0u64, 0u64, Duration::ZERO);
    while start.elapsed() < run {
        let t = Instant::now();
        std::hint::black_box(store.get_fresh_sync(&0));
        let took = t.elapsed();
        worst = worst.max(took);
        slow += u64::from(took > Duration::from_micros(20));
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let puts = writer.join().unwrap_or(0);
    println!(
        "values of {parts} × 64 B parts: reader {:.2} M reads/s, slowest {worst:?}, {slow} reads over 20 µs; writer {:.0} puts/s",
        reads as f64 / run.as_secs_f64() / 1e6,
        puts as f64 / run.as_secs_f64(),
    );
    ExitCode::SUCCESS
}
