//! Real traces (`crates/bench/traces/`): readers for their formats, Belady's
//! optimal hit ratio, and the hit-ratio group that replays every trace at 1 %,
//! 5 % and 20 % of its distinct keys against this project's L1, the anchors, a
//! plain LRU and OPT.

use std::collections::{BinaryHeap, HashMap};
use std::io::{BufRead, BufReader};
use std::num::NonZeroUsize;
use std::path::PathBuf;

use crate::caches::{Contender, Kind, make};
use crate::report::Report;
use crate::{Plan, Progress};

/// How a trace file is stored.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// zstd text, ARC `.lis`: `start count …` per line.
    ArcLis,
    /// xz binary: big-endian `i32` keys.
    Cache2k,
    /// gzip text: one key per line, `*` and empty lines skipped.
    Lirs,
}

/// One trace: its name, file, format, and the capacities it runs at (`None`:
/// 1 %, 5 % and 20 % of its distinct keys).
pub(crate) struct TraceFile {
    pub(crate) name: &'static str,
    file: &'static str,
    format: Format,
    capacities: Option<[usize; 3]>,
}

/// Every trace of the group.
pub(crate) const TRACES: [TraceFile; 8] = [
    TraceFile {
        name: "ARC OLTP",
        file: "arc-OLTP.lis.zst",
        format: Format::ArcLis,
        capacities: Some([1_000, 5_000, 20_000]),
    },
    TraceFile {
        name: "ARC P3",
        file: "arc-P3.lis.zst",
        format: Format::ArcLis,
        capacities: None,
    },
    TraceFile {
        name: "cache2k web07",
        file: "cache2k-web07.trace.xz",
        format: Format::Cache2k,
        capacities: None,
    },
    TraceFile {
        name: "cache2k orm-night",
        file: "cache2k-orm-night.trace.xz",
        format: Format::Cache2k,
        capacities: None,
    },
    TraceFile {
        name: "LIRS loop",
        file: "lirs-loop.trace.gz",
        format: Format::Lirs,
        capacities: None,
    },
    TraceFile {
        name: "LIRS multi2",
        file: "lirs-multi2.trace.gz",
        format: Format::Lirs,
        capacities: None,
    },
    TraceFile {
        name: "LIRS sprite",
        file: "lirs-sprite.trace.gz",
        format: Format::Lirs,
        capacities: None,
    },
    TraceFile {
        name: "LIRS 2_pools",
        file: "lirs-2_pools.trace.gz",
        format: Format::Lirs,
        capacities: None,
    },
];

fn trace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("traces")
}

impl TraceFile {
    /// The keys, in order.
    pub(crate) fn keys(&self) -> Result<Vec<u64>, String> {
        let path = trace_dir().join(self.file);
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let mut reader = BufReader::new(file);
        match self.format {
            Format::ArcLis => {
                let decoder =
                    ruzstd::decoding::StreamingDecoder::new(&mut reader).map_err(|e| bad(&e))?;
                parse_lis(BufReader::new(decoder)).map_err(|e| bad(&e))
            }
            Format::Cache2k => {
                let mut raw = Vec::new();
                lzma_rs::xz_decompress(&mut reader, &mut raw).map_err(|e| bad(&e))?;
                Ok(parse_be_i32(&raw))
            }
            Format::Lirs => parse_lirs(BufReader::new(flate2::read::GzDecoder::new(reader)))
                .map_err(|e| bad(&e)),
        }
    }

    /// The three capacities for a trace with `distinct` keys.
    pub(crate) fn capacities(&self, distinct: usize) -> [usize; 3] {
        self.capacities
            .unwrap_or_else(|| [1, 5, 20].map(|pct| (distinct * pct / 100).max(1)))
    }
}

fn parse_lis(r: impl BufRead) -> std::io::Result<Vec<u64>> {
    let mut keys = Vec::new();
    for line in r.lines() {
        let line = line?;
        let mut parts = line.split_whitespace();
        let (Some(start), Some(count)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(start), Ok(count)) = (start.parse::<u64>(), count.parse::<u64>()) else {
            continue;
        };
        keys.extend(start..start + count);
    }
    Ok(keys)
}

fn parse_be_i32(raw: &[u8]) -> Vec<u64> {
    raw.chunks_exact(4)
        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as i64 as u64)
        .collect()
}

fn parse_lirs(r: impl BufRead) -> std::io::Result<Vec<u64>> {
    let mut keys = Vec::new();
    for line in r.lines() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() || line == "*" {
            continue;
        }
        if let Ok(k) = line.parse::<i64>() {
            keys.push(k as u64);
        }
    }
    Ok(keys)
}

/// The number of distinct keys.
pub(crate) fn distinct(keys: &[u64]) -> usize {
    let mut seen = std::collections::HashSet::with_capacity(keys.len() / 4);
    keys.iter().filter(|k| seen.insert(**k)).count()
}

/// Belady's optimal hit ratio (%) at `capacity`: on a miss the key is kept only
/// if it is used again sooner than some resident key, which is then evicted
/// (the resident key whose next use is farthest).
pub(crate) fn opt_hit_ratio(keys: &[u64], capacity: usize) -> f64 {
    const NEVER: usize = usize::MAX;
    // next[i]: the index of the next access to keys[i] after i.
    let mut next = vec![NEVER; keys.len()];
    let mut last: HashMap<u64, usize> = HashMap::with_capacity(keys.len() / 4);
    for (i, &k) in keys.iter().enumerate().rev() {
        if let Some(&j) = last.get(&k) {
            next[i] = j;
        }
        last.insert(k, i);
    }
    // Residents by next use (lazy deletion: stale heap entries are skipped).
    let mut resident: HashMap<u64, usize> = HashMap::with_capacity(capacity * 2);
    let mut heap: BinaryHeap<(usize, u64)> = BinaryHeap::with_capacity(capacity * 2);
    let mut hits = 0u64;
    for (i, &k) in keys.iter().enumerate() {
        let n = next[i];
        if let Some(slot) = resident.get_mut(&k) {
            hits += 1;
            *slot = n;
            heap.push((n, k));
            continue;
        }
        if n == NEVER {
            continue; // never used again: not worth a slot
        }
        if resident.len() >= capacity {
            // The farthest next use among residents.
            let far = loop {
                match heap.peek() {
                    Some(&(at, key)) if resident.get(&key) == Some(&at) => break Some((at, key)),
                    Some(_) => {
                        heap.pop();
                    }
                    None => break None,
                }
            };
            match far {
                Some((at, key)) if at > n => {
                    heap.pop();
                    resident.remove(&key);
                }
                _ => continue, // every resident is used before k: skip k
            }
        }
        resident.insert(k, n);
        heap.push((n, k));
    }
    100.0 * hits as f64 / keys.len().max(1) as f64
}

/// A plain (unsharded) LRU.
struct PlainLru(parking_lot::Mutex<lru::LruCache<u64, u64, foldhash::fast::RandomState>>);

impl Contender<u64> for PlainLru {
    fn get(&self, key: u64) -> bool {
        self.0.lock().get(&key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        self.0.lock().put(key, value);
    }
    fn len(&self) -> usize {
        self.0.lock().len()
    }
}

/// moka with its pending tasks run after every insert: never over capacity.
struct MokaStrict(moka::sync::Cache<u64, u64>);

impl Contender<u64> for MokaStrict {
    fn get(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
        self.0.run_pending_tasks();
    }
    fn len(&self) -> usize {
        self.0.run_pending_tasks();
        self.0.entry_count() as usize
    }
}

/// The contenders of the group, by label.
const LABELS: [&str; 5] = [
    "store-memory",
    "quick_cache",
    "moka (as run)",
    "moka (pending tasks run)",
    "plain LRU",
];

fn contender(label: &str, capacity: usize) -> Box<dyn Contender<u64>> {
    match label {
        "store-memory" => make(Kind::StoreMemory, capacity),
        "quick_cache" => make(Kind::QuickCache, capacity),
        "moka (as run)" => make(Kind::MokaSync, capacity),
        "moka (pending tasks run)" => Box::new(MokaStrict(moka::sync::Cache::new(capacity as u64))),
        _ => Box::new(PlainLru(parking_lot::Mutex::new(
            lru::LruCache::with_hasher(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
                foldhash::fast::RandomState::default(),
            ),
        ))),
    }
}

/// How often [`replay`] samples the size of a cache of `capacity` entries:
/// every 1,024 accesses, or every `capacity` for larger caches (counting
/// moka's entries costs one step per entry, so sampling costs at most one
/// step per access; moka's overshoot of deferred writes, ~64 entries, is
/// under the 1 % tolerance above 6,400 entries anyway).
fn sample_every(capacity: usize) -> usize {
    capacity.max(1024)
}

/// Replays `keys` (get; on a miss, insert): the hit ratio (%) and the largest
/// size seen, sampled every `every` accesses.
fn replay(c: &dyn Contender<u64>, keys: &[u64], every: usize) -> (f64, usize) {
    let every = every.max(1);
    let mut hits = 0u64;
    let mut peak = 0;
    for (i, &k) in keys.iter().enumerate() {
        if c.get(k) {
            hits += 1;
        } else {
            c.insert(k, k);
        }
        if i % every == every - 1 {
            peak = peak.max(c.len_now());
        }
    }
    (100.0 * hits as f64 / keys.len().max(1) as f64, peak)
}

pub(crate) fn units(_plan: &Plan) -> u64 {
    (TRACES.len() * 3 * (LABELS.len() + 1)) as u64
}

/// The real-trace hit-ratio group and its targets.
pub(crate) fn hit_ratio(plan: &Plan, report: &mut Report, progress: &Progress) {
    let mut gaps = Vec::new();
    for trace in &TRACES {
        let mut keys = match trace.keys() {
            Ok(k) => k,
            Err(e) => {
                report.target(format!("trace {}", trace.name), "readable", e, false);
                continue;
            }
        };
        if plan.quick {
            keys.truncate(100_000);
        }
        let distinct = distinct(&keys);
        for capacity in trace.capacities(distinct) {
            let cell = format!("{} @ {capacity}", trace.name);
            let opt = opt_hit_ratio(&keys, capacity);
            report.figure(
                "real traces",
                trace.name,
                format!("OPT @ {capacity}"),
                opt,
                "%",
            );
            progress.tick(&format!("real traces {cell} OPT"));
            let mut ours = 0.0;
            let mut best: (f64, &str) = (0.0, "");
            let mut lru = 0.0;
            for label in LABELS {
                let c = contender(label, capacity);
                let (ratio, peak) = replay(c.as_ref(), &keys, sample_every(capacity));
                // The rule: moka counts only where it stays within its
                // capacity (its bookkeeping is deferred); others are noted.
                let over = peak > capacity + capacity / 100;
                if over && !label.starts_with("moka") {
                    report.notes.push(format!(
                        "{cell}: {label} held up to {peak} entries (capacity {capacity})"
                    ));
                }
                let over = over && label.starts_with("moka");
                report.figure(
                    "real traces",
                    trace.name,
                    format!("{label} @ {capacity}"),
                    ratio,
                    "%",
                );
                progress.tick(&format!("real traces {cell} {label}"));
                match label {
                    "store-memory" => ours = ratio,
                    "plain LRU" => lru = ratio,
                    _ if over => report.notes.push(format!(
                        "{cell}: {label} held up to {peak} entries (capacity {capacity}); not counted as an anchor"
                    )),
                    _ => {}
                }
                if label != "store-memory" && !over && ratio > best.0 {
                    best = (ratio, label);
                }
            }
            gaps.push(ours - best.0);
            report.target(
                format!("hit ratio, {cell}"),
                "≥ best anchor − 0.5 pt, ≥ plain LRU − 0.5 pt",
                format!(
                    "{ours:.2} % vs {} {:.2} %, LRU {lru:.2} %, OPT {opt:.2} %",
                    best.1, best.0
                ),
                crate::score::cell_met(ours, best.0, Some(lru)),
            );
        }
    }
    let mean = crate::score::mean_gap(&gaps);
    report.target(
        "hit ratio, real traces on average",
        "ahead of the best anchor",
        format!("{mean:+.2} pt over {} cells", gaps.len()),
        !gaps.is_empty() && mean > 0.0,
    );
}

/// Runs `run` on every job, two at a time (the machine's cores); the results
/// in the jobs' order.
pub(crate) fn on_two_threads<J: Sync, R: Send>(jobs: &[J], run: impl Fn(&J) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = parking_lot::Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(job) = jobs.get(at) else { break };
                    let result = run(job);
                    done.lock().push((at, result));
                }
            });
        }
    });
    let mut done = done.into_inner();
    done.sort_by_key(|(at, _)| *at);
    done.into_iter().map(|(_, r)| r).collect()
}

/// The median of `runs` (one run or more) and its line for `--ours-traces`:
/// `label: median`, then the lowest and highest run when there were several.
pub(crate) fn spread(label: &str, mut runs: Vec<f64>) -> (f64, String) {
    runs.sort_by(f64::total_cmp);
    let mid = runs[runs.len() / 2];
    let line = if runs.len() > 1 {
        format!(
            "{label}: {mid:.4} ({:.2} … {:.2} over {} runs)",
            runs[0],
            runs[runs.len() - 1],
            runs.len()
        )
    } else {
        format!("{label}: {mid:.4}")
    };
    (mid, line)
}

/// `cache-bench --ours-traces [FILTER] [RUNS] [--against FILE]`: store-memory alone on every
/// real-trace cell (two at a time) and on the synthetic Zipf cells, to compare
/// a policy change with the anchors of a full run's `results.json` in a
/// fraction of its time. `FILTER` keeps the cells whose name contains it
/// (case-insensitive); without one, the synthetic cells run once. Each cell
/// runs `RUNS` times (default 1), each with a new store and so a new store
/// seed (the shared seed is the process's); one line per cell (see
/// [`spread`]: the policy's choices, hence its ratio, depend on the seeds).
/// Returns the real-trace medians by cell (for `--against`: `score.rs`).
pub(crate) fn ours_only(
    filter: Option<&str>,
    runs: usize,
) -> std::collections::BTreeMap<(String, usize), f64> {
    let filter = filter.map(str::to_lowercase);
    let mut cells = Vec::new();
    let wanted = |name: &str| {
        filter
            .as_deref()
            .is_none_or(|f| name.to_lowercase().contains(f))
    };
    for trace in TRACES.iter().filter(|t| wanted(t.name)) {
        match trace.keys() {
            Ok(keys) => {
                let keys = std::sync::Arc::new(keys);
                for capacity in trace.capacities(distinct(&keys)) {
                    for _ in 0..runs.max(1) {
                        cells.push((trace.name, capacity, std::sync::Arc::clone(&keys)));
                    }
                }
            }
            Err(e) => eprintln!("{}: {e}", trace.name),
        }
    }
    let (mut out, ratios) = std::thread::scope(|s| {
        // The synthetic cells: once beside every real trace, or `runs` times
        // when the filter names them ("zipf", "scan every 1m", …).
        let synthetic = s.spawn(|| match filter.as_deref() {
            None => crate::l1::ours_synthetic(None, 1),
            Some(f) => crate::l1::ours_synthetic(Some(f), runs),
        });
        let ratios = on_two_threads(&cells, |(_, capacity, keys)| {
            let c = contender("store-memory", *capacity);
            replay(c.as_ref(), keys, sample_every(*capacity)).0
        });
        // A panic in the synthetic cells is the bench's, as before.
        let synthetic = synthetic
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (synthetic, ratios)
    });
    let mut by_cell = std::collections::BTreeMap::<_, Vec<f64>>::new();
    for ((name, capacity, _), ratio) in cells.iter().zip(ratios) {
        by_cell.entry((*name, *capacity)).or_default().push(ratio);
    }
    let mut medians = std::collections::BTreeMap::new();
    for ((name, capacity), r) in by_cell {
        let (mid, line) = spread(&format!("{name} @ {capacity}"), r);
        medians.insert((name.to_owned(), capacity), mid);
        out.push(line);
    }
    out.sort();
    out.iter().for_each(|l| println!("{l}"));
    medians
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_threads_answer_in_the_jobs_order() {
        let jobs: Vec<u64> = (0..1_000).collect();
        assert_eq!(
            on_two_threads(&jobs, |&j| j * 3),
            jobs.iter().map(|j| j * 3).collect::<Vec<_>>()
        );
    }

    #[test]
    fn spread_gives_the_median_and_the_range_of_several_runs() {
        assert_eq!(
            spread("a", vec![3.0, 1.0, 2.0]),
            (2.0, "a: 2.0000 (1.00 … 3.00 over 3 runs)".to_owned())
        );
        assert_eq!(spread("b", vec![5.5]), (5.5, "b: 5.5000".to_owned()));
    }

    #[test]
    fn opt_on_a_loop_keeps_a_fixed_set() {
        // A loop over 10 keys, 10 times, with room for 4: OPT keeps 3 of them
        // for good and cycles the fourth slot (hits ≈ capacity − 1 per round).
        let keys: Vec<u64> = (0..10).cycle().take(100).collect();
        let opt = opt_hit_ratio(&keys, 4);
        assert!(opt > 30.0 && opt < 45.0, "{opt}");
        assert_eq!(opt_hit_ratio(&keys, 10), 90.0);
        assert_eq!(opt_hit_ratio(&[1, 2, 3], 1), 0.0);
    }

    #[test]
    fn formats_parse() {
        assert_eq!(
            parse_lis("5 3 0 0\n9 1 0 0\n".as_bytes()).expect("parses"),
            vec![5, 6, 7, 9]
        );
        assert_eq!(
            parse_lirs("1\n*\n\n2\n".as_bytes()).expect("parses"),
            vec![1, 2]
        );
        assert_eq!(
            parse_be_i32(&[0, 0, 0, 7, 255, 255, 255, 255]),
            vec![7, u64::MAX]
        );
    }

    #[test]
    fn the_peak_counts_what_moka_serves_before_it_catches_up() {
        // A moka cache of 10 entries serves the keys it was just given before
        // its deferred bookkeeping evicts them; `entry_count()` would report
        // at most 10 here, so a size check built on it counted moka as an
        // anchor in cells where it held nearly twice its capacity.
        let moka = contender("moka (as run)", 10);
        let keys: Vec<u64> = (0..40).collect();
        let (_, peak) = replay(moka.as_ref(), &keys, 1);
        assert!(peak > 10, "moka (as run) seen holding at most {peak}");
        let served = keys.iter().filter(|&&k| moka.get(k)).count();
        assert!(served > 10, "moka (as run) served {served} of 40 keys");
        // With its pending tasks run after each insert, it never holds more.
        let strict = contender("moka (pending tasks run)", 10);
        let (_, peak) = replay(strict.as_ref(), &keys, 1);
        assert!(peak <= 10, "moka (pending tasks run) held {peak}");
    }

    #[test]
    fn every_trace_reads() {
        for t in &TRACES {
            let keys = t.keys().expect("readable");
            assert!(keys.len() > 10_000, "{}: {}", t.name, keys.len());
        }
    }
}
