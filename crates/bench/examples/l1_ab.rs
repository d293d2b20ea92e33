//! An in-process A/B of store-memory against quick_cache: both caches live in
//! one process and run in interleaved 100 ms rounds, so the machine's drift
//! (a shared VM's neighbours, frequency changes) hits both alike. Prints the
//! median of each and their ratio.
//!
//! ```text
//! cargo run --release -p cache-bench --example l1_ab -- [hit|gets|mix|puts] [seconds]
//! ```
//!
//! `hit` reads only keys the prefill stored; `gets` reads a Zipf trace over ten
//! times the capacity; `mix` is 90 % of those reads and 10 % inserts; `puts`
//! inserts only. `CAP` sets the capacity (default 100,000).

use std::time::{Duration, Instant};

use cache_core::{Clock, Entry, SystemClock};
use cache_store_memory::MemoryStore;

/// Keys drawn from a Zipf(1.0) distribution over `0..universe`.
fn zipf_keys(universe: u64, n: usize) -> Vec<u64> {
    let h: f64 = (1..=universe).map(|i| 1.0 / i as f64).sum();
    let mut cdf = Vec::with_capacity(universe as usize);
    let mut acc = 0.0;
    for i in 1..=universe {
        acc += 1.0 / i as f64 / h;
        cdf.push(acc);
    }
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            cdf.partition_point(|&c| c < u) as u64
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "mix".into());
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);
    let cap: usize = std::env::var("CAP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let keys = zipf_keys(cap as u64 * 10, 1_000_000);
    let Ok(store) = MemoryStore::<u64, u64>::builder().max_entries(cap).build() else {
        eprintln!("invalid capacity {cap}");
        return;
    };
    let quick = quick_cache::sync::Cache::<u64, u64>::new(cap);
    let (clock, ttl) = (SystemClock, Duration::from_secs(3_600));
    for k in 0..cap as u64 {
        let _ = store.put_sync(k, Entry::new(k, clock.recent(), ttl));
        quick.insert(k, k);
    }
    let hits: Vec<u64> = keys.iter().copied().filter(|&k| k < cap as u64).collect();
    let trace = if mode == "hit" { &hits } else { &keys };
    let put_every = match mode.as_str() {
        "mix" => 10,
        "puts" => 1,
        _ => 0,
    };
    let run = |ours: bool, at: &mut usize| -> f64 {
        let start = Instant::now();
        let (mut ops, mut found) = (0u64, 0u64);
        while start.elapsed() < Duration::from_millis(100) {
            for _ in 0..1024 {
                let k = trace[*at];
                *at = (*at + 1) % trace.len();
                let put = put_every > 0 && ops % put_every == put_every - 1;
                match (ours, put) {
                    (true, true) => {
                        let _ = store.put_sync(k, Entry::new(k, clock.recent(), ttl));
                    }
                    (true, false) => found += u64::from(store.get_sync(&k).is_some()),
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
    for round in 0..secs * 5 {
        // Alternate which goes first.
        if round % 2 == 0 {
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
}
