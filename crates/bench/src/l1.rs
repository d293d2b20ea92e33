//! In-process figures: get-hit and mixed throughput, hit ratio under three traces,
//! bytes per entry.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::caches::{Contender, Kind, make};
use crate::real::{on_two_threads, opt_hit_ratio, spread};
use crate::report::{Report, median};
use crate::trace::{SCAN_BASE, Zipf, with_scans, zipf_keys};
use crate::{Plan, Progress};

const UNIVERSE: usize = 1_000_000;
const CAPACITY: usize = 100_000;

/// Operations per second of `threads` threads running `op` over their part of
/// `keys` for `dur`.
fn run_threads(
    cache: &dyn Contender<u64>,
    threads: usize,
    keys: &[u64],
    mix: bool,
    dur: Duration,
) -> f64 {
    let barrier = Barrier::new(threads);
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let offset = t * keys.len() / threads;
                    barrier.wait();
                    let start = Instant::now();
                    let mut ops = 0u64;
                    let mut i = offset;
                    let mut sink = 0u64;
                    loop {
                        for _ in 0..1024 {
                            let k = keys[i];
                            i += 1;
                            if i == keys.len() {
                                i = 0;
                            }
                            if mix && ops % 10 == 9 {
                                cache.insert(k, k);
                            } else {
                                sink += u64::from(cache.get(k));
                            }
                            ops += 1;
                        }
                        if start.elapsed() >= dur {
                            break;
                        }
                    }
                    std::hint::black_box(sink);
                    (ops, start.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (ops, took) = h.join().unwrap_or((0, Duration::from_secs(1)));
                (ops as f64 / took.as_secs_f64()) as u64
            })
            .sum()
    });
    total as f64
}

pub(crate) fn throughput(plan: &Plan, report: &mut Report, progress: &Progress) {
    let zipf = Zipf::new(UNIVERSE, 1.0);
    let trace = zipf_keys(&zipf, plan.scale(1_000_000, 200_000), 7);
    // Get-hit: only keys the prefill put in (the `CAPACITY` most popular).
    let hits: Vec<u64> = trace
        .iter()
        .copied()
        .filter(|&k| (k as usize) < CAPACITY)
        .collect();
    let dur = Duration::from_millis(plan.scale(400, 60) as u64);
    let reps = plan.scale(5, 1);
    let workloads: [(&str, bool, &[u64]); 2] = [
        ("get-hit", false, &hits),
        ("90/10 get/insert", true, &trace),
    ];
    for threads in [1usize, 2] {
        for (name, mix, keys) in workloads {
            let series = format!(
                "{name}, {threads} thread{}",
                if threads == 1 { "" } else { "s" }
            );
            let caches: Vec<(Kind, Box<dyn Contender<u64>>)> = Kind::ALL
                .into_iter()
                .map(|k| {
                    let c = make::<u64>(k, CAPACITY);
                    for key in 0..CAPACITY as u64 {
                        c.insert(key, key);
                    }
                    c.settle();
                    (k, c)
                })
                .collect();
            let mut samples = vec![Vec::new(); caches.len()];
            // Interleaved: every contender once per round, several rounds.
            for _ in 0..reps {
                for (i, (_, c)) in caches.iter().enumerate() {
                    samples[i].push(run_threads(c.as_ref(), threads, keys, mix, dur));
                    progress.tick(&format!("l1 {series}"));
                }
            }
            for ((kind, _), s) in caches.iter().zip(samples) {
                report.figure(
                    "l1 throughput",
                    series.clone(),
                    kind.name(),
                    median(s) / 1e6,
                    "Mops/s",
                );
            }
            report.compare("l1 throughput", &series, Kind::QuickCache.name());
        }
    }
}

pub(crate) fn throughput_units(plan: &Plan) -> u64 {
    (2 * 2 * Kind::ALL.len() * plan.scale(5, 1)) as u64
}

/// Kinds whose eviction policy differs (the facade L1 *is* store-memory, moka
/// future shares moka's policy).
const POLICIES: [Kind; 4] = [
    Kind::StoreMemory,
    Kind::MokaSync,
    Kind::QuickCache,
    Kind::ShardedLru,
];

pub(crate) fn hit_ratio_units(_plan: &Plan) -> u64 {
    ((3 * 2 + LOOPS.len()) * POLICIES.len()) as u64
}

/// The synthetic hit-ratio traces: a Zipf trace with a scan every so many
/// accesses (0: none).
const SYNTHETIC: [(&str, usize); 3] = [
    ("Zipf", 0),
    ("Zipf + scan every 1M", 1_000_000),
    ("Zipf + scan every 200k", 200_000),
];

/// The loop cells: keys `0..n` read in turn, over and over, for `n` this
/// many times the capacity, at [`LOOP_CAPACITY`]. LRU hits nothing on them;
/// Belady keeps a fixed set and hits about `(capacity − 1) / n` once the
/// first pass is over. A policy that
/// churns its protected part on them (as store-memory did at this size until
/// its sketch aged more slowly: half of Belady) shows here.
const LOOPS: [usize; 2] = [3, 5];
const LOOP_CAPACITY: usize = 10_000;
/// The share of Belady's hit ratio a loop cell must reach.
const LOOP_SHARE_OF_OPT: f64 = 0.85;

/// Replays `keys` (get; on a miss, insert) and returns the hit ratio, in
/// percent, of the lookups outside the scans.
fn replay_scanned(c: &dyn Contender<u64>, keys: &[u64]) -> f64 {
    let (mut hits, mut lookups) = (0u64, 0u64);
    for (i, &k) in keys.iter().enumerate() {
        let hit = c.get(k);
        if k < SCAN_BASE {
            lookups += 1;
            hits += u64::from(hit);
        }
        if !hit {
            c.insert(k, k);
        }
        if i % 256 == 255 {
            c.settle();
        }
    }
    100.0 * hits as f64 / lookups.max(1) as f64
}

/// Replays `keys` through every policy of [`POLICIES`] at `capacity` and
/// reports each hit ratio under `series`; returns store-memory's and the
/// anchors', by name.
fn replay_policies(
    series: &str,
    capacity: usize,
    keys: &[u64],
    report: &mut Report,
    progress: &Progress,
) -> (f64, Vec<(&'static str, f64)>) {
    let mut ours = 0.0;
    let mut anchors = Vec::new();
    for kind in POLICIES {
        let ratio = replay_scanned(make::<u64>(kind, capacity).as_ref(), keys);
        if kind.is_ours() {
            ours = ratio;
        } else {
            anchors.push((kind.name(), ratio));
        }
        report.figure("hit ratio", series, kind.name(), ratio, "%");
        progress.tick(&format!("hit ratio {series}"));
    }
    (ours, anchors)
}

/// A synthetic cell's name: the trace's and the capacity's.
fn series(name: &str, capacity: usize) -> String {
    format!("{name}, capacity {}k", capacity / 1000)
}

pub(crate) fn hit_ratio(plan: &Plan, report: &mut Report, progress: &Progress) {
    let zipf = Zipf::new(UNIVERSE, 1.0);
    let accesses = plan.scale(10_000_000, 1_000_000);
    let zipf_part = zipf_keys(&zipf, accesses, 11);
    for capacity in [10_000usize, 100_000] {
        for (name, every) in SYNTHETIC {
            let every = if plan.quick { every / 10 } else { every };
            let keys = with_scans(&zipf_part, every, plan.scale(200_000, 20_000));
            let series = series(name, capacity);
            let (ours, anchors) = replay_policies(&series, capacity, &keys, report, progress);
            let best_anchor = anchors.iter().map(|&(_, r)| r).fold(0.0, f64::max);
            report.figure(
                "hit ratio",
                series.clone(),
                "ideal (top-C mass)",
                100.0 * zipf.top_mass(capacity),
                "%",
            );
            report.target(
                format!("hit ratio, {series}"),
                "≥ best anchor − 1 pt",
                format!("{ours:.1} % vs {best_anchor:.1} %"),
                ours >= best_anchor - 1.0,
            );
        }
    }
    for times in LOOPS {
        let n = (LOOP_CAPACITY * times) as u64;
        let keys: Vec<u64> = (0..n)
            .cycle()
            .take(plan.scale(2_000_000, 300_000))
            .collect();
        let series = series(&format!("loop over {times}× the capacity"), LOOP_CAPACITY);
        // Belady on this very trace, whose first pass is all misses for
        // every policy (`(capacity − 1) / n` is only its steady state).
        let opt = opt_hit_ratio(&keys, LOOP_CAPACITY);
        let (ours, anchors) = replay_policies(&series, LOOP_CAPACITY, &keys, report, progress);
        let anchors: Vec<String> = anchors
            .iter()
            .map(|(name, r)| format!("{name} {r:.1} %"))
            .collect();
        report.figure("hit ratio", series.clone(), "OPT (Belady)", opt, "%");
        report.target(
            format!("hit ratio, {series}"),
            format!("≥ {LOOP_SHARE_OF_OPT} × OPT"),
            format!("{ours:.1} % vs OPT {opt:.1} % ({})", anchors.join(", ")),
            ours >= LOOP_SHARE_OF_OPT * opt,
        );
    }
}

/// store-memory alone on the synthetic cells of [`hit_ratio`] (full size)
/// whose series name contains `filter` (all of them for `None`), `runs` times
/// each with a new store seed: one line per cell (`real::spread`), for
/// `cache-bench --ours-traces`.
pub(crate) fn ours_synthetic(filter: Option<&str>, runs: usize) -> Vec<String> {
    let wanted: Vec<(String, usize, usize)> = [10_000usize, 100_000]
        .into_iter()
        .flat_map(|capacity| {
            SYNTHETIC
                .into_iter()
                .map(move |(name, every)| (series(name, capacity), capacity, every))
        })
        .filter(|(series, _, _)| filter.is_none_or(|f| series.to_lowercase().contains(f)))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let zipf_part = zipf_keys(&Zipf::new(UNIVERSE, 1.0), 10_000_000, 11);
    let cells: Vec<(String, usize, Vec<u64>)> = wanted
        .into_iter()
        .map(|(series, capacity, every)| (series, capacity, with_scans(&zipf_part, every, 200_000)))
        .collect();
    let jobs: Vec<usize> = (0..cells.len())
        .flat_map(|cell| std::iter::repeat_n(cell, runs.max(1)))
        .collect();
    let ratios = on_two_threads(&jobs, |&cell| {
        let (_, capacity, keys) = &cells[cell];
        replay_scanned(make::<u64>(Kind::StoreMemory, *capacity).as_ref(), keys)
    });
    let mut by_cell = vec![Vec::new(); cells.len()];
    for (&cell, ratio) in jobs.iter().zip(ratios) {
        by_cell[cell].push(ratio);
    }
    cells
        .iter()
        .zip(by_cell)
        .map(|((series, _, _), r)| spread(series, r).1)
        .collect()
}

/// Resident set size of this process, in bytes.
pub(crate) fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

pub(crate) const MEMORY_ENTRIES: usize = 100_000;

/// Run in a child process (`--probe-memory KIND`): the RSS growth of one cache
/// holding 100k entries of 64-byte values, per entry.
pub(crate) fn probe_memory(kind: Kind) -> Option<f64> {
    let before = rss_bytes()?;
    let cache = make::<Vec64>(kind, MEMORY_ENTRIES);
    for k in 0..MEMORY_ENTRIES as u64 {
        cache.insert(k, Vec64([k as u8; 64]));
    }
    cache.settle();
    let len = cache.len().max(1);
    let after = rss_bytes()?;
    std::hint::black_box(&cache);
    Some(after.saturating_sub(before) as f64 / len as f64)
}

/// A 64-byte value (serde has no impls for `[u8; 64]`).
#[derive(Clone)]
pub(crate) struct Vec64(pub(crate) [u8; 64]);

impl serde::Serialize for Vec64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Vec64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<u8> = serde::Deserialize::deserialize(d)?;
        let mut out = [0u8; 64];
        let n = v.len().min(64);
        out[..n].copy_from_slice(&v[..n]);
        Ok(Vec64(out))
    }
}

pub(crate) fn memory(report: &mut Report, progress: &Progress) {
    let Ok(exe) = std::env::current_exe() else {
        report
            .notes
            .push("memory: cannot find the bench binary to re-run".into());
        return;
    };
    let mut quick = None;
    let mut ours = None;
    for kind in [
        Kind::StoreMemory,
        Kind::Facade,
        Kind::MokaSync,
        Kind::QuickCache,
        Kind::ShardedLru,
    ] {
        let out = std::process::Command::new(&exe)
            .args(["--probe-memory", kind.slug()])
            .output();
        progress.tick("memory");
        let bytes = out.ok().filter(|o| o.status.success()).and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        });
        match bytes {
            Some(b) => {
                report.figure(
                    "memory",
                    "bytes per entry, 100k × 64 B values",
                    kind.name(),
                    b,
                    "B/entry",
                );
                if kind == Kind::QuickCache {
                    quick = Some(b);
                }
                if kind == Kind::StoreMemory {
                    ours = Some(b);
                }
            }
            None => report
                .notes
                .push(format!("memory: the probe for {} failed", kind.name())),
        }
    }
    if let (Some(o), Some(q)) = (ours, quick) {
        report.target(
            "bytes per entry",
            "≤ 1.25× quick_cache",
            format!("{o:.0} B vs {q:.0} B ({:.2}×)", o / q),
            o <= 1.25 * q,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_naming_no_synthetic_cell_replays_nothing() {
        // Real-trace filters reach this too: they must not pay for a replay.
        assert!(ours_synthetic(Some("lirs loop"), 3).is_empty());
    }
}
