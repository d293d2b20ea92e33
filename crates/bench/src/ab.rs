//! `cache-bench --ab MODE [SECONDS]`: an in-process A/B of store-memory
//! against quick_cache. Both caches live in one process and run in
//! interleaved 100 ms rounds, so the machine's drift (a shared VM's
//! neighbours, frequency changes) hits both alike; prints the median of each
//! and their ratio. The caches are called directly, not through
//! [`Contender`](crate::caches::Contender).
//!
//! `hit` reads only keys the prefill stored (`get_fresh_sync`, the value
//! only; `entry` does the same with `get_sync`, which builds the whole entry;
//! `facade` with a memory-only facade's `get`); `gets` reads a Zipf trace over
//! ten times the capacity; `mix` is 90 % of those reads and 10 % inserts;
//! `puts` inserts only (mostly replacements: the trace's hot keys are held);
//! `replace` puts only keys the store holds; `new` only keys it never saw
//! (every put evicts). `CAP` sets the capacity (default 100,000);
//! `AB_ONLY=ours` or `AB_ONLY=quick` runs one side only, for `perf record`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use cache_core::{Clock, Entry, SystemClock};
use cache_store_memory::MemoryStore;
use futures_util::FutureExt;

use crate::report::median;
use crate::trace::{Zipf, zipf_keys};

const MODES: [&str; 8] = [
    "hit", "entry", "facade", "gets", "mix", "puts", "replace", "new",
];

pub(crate) fn ab(args: &[String]) -> ExitCode {
    let mode = args.first().map_or("mix", String::as_str);
    if !MODES.contains(&mode) {
        eprintln!("--ab takes one of {MODES:?}, got `{mode}`");
        return ExitCode::FAILURE;
    }
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4);
    let cap: usize = std::env::var("CAP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let keys = zipf_keys(&Zipf::new(cap * 10, 1.0), 1_000_000, 7);
    let Ok(store) = MemoryStore::<u64, u64>::builder().max_entries(cap).build() else {
        eprintln!("invalid capacity {cap}");
        return ExitCode::FAILURE;
    };
    let quick = quick_cache::sync::Cache::<u64, u64>::new(cap);
    let facade: resilient_cache::Cache<u64, u64> = resilient_cache::Cache::builder("ab")
        .max_entries(cap)
        .build()
        .expect("valid A/B config");
    let (clock, ttl) = (SystemClock, Duration::from_secs(3_600));
    for k in 0..cap as u64 {
        let _ = store.put_sync(k, Entry::new(k, clock.recent(), ttl));
        quick.insert(k, k);
        let _ = facade.set(k, k).now_or_never();
    }
    let hits: Vec<u64> = keys.iter().copied().filter(|&k| k < cap as u64).collect();
    let trace = if matches!(mode, "hit" | "entry" | "facade" | "replace") {
        &hits
    } else {
        &keys
    };
    let put_every = match mode {
        "mix" => 10,
        "puts" | "replace" | "new" => 1,
        _ => 0,
    };
    let unseen = mode == "new";
    // Which read our side makes, decided once (not by comparing strings per op).
    let (by_facade, by_entry) = (mode == "facade", mode == "entry");
    let run = |ours: bool, at: &mut usize| -> f64 {
        let start = Instant::now();
        let (mut ops, mut found) = (0u64, 0u64);
        while start.elapsed() < Duration::from_millis(100) {
            for _ in 0..1024 {
                let k = if unseen {
                    // Keys never seen: every put evicts.
                    *at += 1;
                    (1 << 40) + *at as u64
                } else {
                    let k = trace[*at];
                    *at = (*at + 1) % trace.len();
                    k
                };
                let put = put_every > 0 && ops % put_every == put_every - 1;
                match (ours, put) {
                    (true, true) => {
                        let _ = store.put_sync(k, Entry::new(k, clock.recent(), ttl));
                    }
                    (true, false) if by_facade => {
                        found +=
                            u64::from(matches!(facade.get(&k).now_or_never(), Some(Ok(Some(_)))));
                    }
                    (true, false) if by_entry => {
                        found += u64::from(store.get_sync(&k).is_some());
                    }
                    (true, false) => found += u64::from(store.get_fresh_sync(&k).is_some()),
                    (false, true) => quick.insert(k, k),
                    (false, false) => found += u64::from(quick.get(&k).is_some()),
                }
                ops += 1;
            }
        }
        std::hint::black_box(found);
        ops as f64 / start.elapsed().as_secs_f64() / 1e6
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut at_a, mut at_b) = (0, 0);
    // `AB_ONLY=ours|quick` runs one side only (for `perf record`).
    let only = std::env::var("AB_ONLY").unwrap_or_default();
    for round in 0..secs * 5 {
        if only == "ours" {
            a.push(run(true, &mut at_a));
            b.push(1.0);
        } else if only == "quick" {
            a.push(1.0);
            b.push(run(false, &mut at_b));
        } else if round % 2 == 0 {
            // Alternate which goes first.
            a.push(run(true, &mut at_a));
            b.push(run(false, &mut at_b));
        } else {
            b.push(run(false, &mut at_b));
            a.push(run(true, &mut at_a));
        }
    }
    let (a, b) = (median(a), median(b));
    println!(
        "{mode}, capacity {cap}: store-memory {a:.2} Mops/s, quick_cache {b:.2} Mops/s (medians of interleaved rounds): {:.2}×",
        a / b
    );
    ExitCode::SUCCESS
}
