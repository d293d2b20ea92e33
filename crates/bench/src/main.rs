//! `cargo xtask bench`: this project side by side with the caches users would
//! otherwise pick, in one process, interleaved and repeated, reported as ratios.
//!
//! ```text
//! cargo xtask bench [--quick] [--filter GROUP] [--out DIR]
//! groups: l1, hit-ratio, traces (real traces), memory, l2, clear, stampede, outage, overheads
//! cargo run --release -p cache-bench -- --ab hit|entry|facade|gets|mix|puts|replace|new [SECONDS]
//! cargo run --release -p cache-bench -- --ours-traces [TRACE] [RUNS] [--against results.json]
//! cargo run --release -p cache-bench -- --drop-probe [PARTS]
//! ```
//!
//! `--ours-traces` without a filter replays every real trace `RUNS` times and
//! the synthetic Zipf cells once; a filter naming synthetic cells (`zipf`,
//! `"capacity 10k"`, `"scan every 1m"`) replays those `RUNS` times, each with a
//! new store seed, and prints the median and the range. The L1's shared hash
//! seed is drawn once per process, so runs of one process share it: to see
//! its effect, run the command several times.
//!
//! Writes a table to stdout and `report.md`, `results.json` and SVG charts to
//! `target/bench/` (or `--out`).
#![forbid(unsafe_code)]

mod ab;
mod ab_l2;
mod caches;
mod clear;
mod drops;
mod l1;
mod l2;
mod real;
mod report;
mod resilience;
mod score;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use crate::caches::Kind;
use crate::report::Report;

/// What to run, and how long.
pub(crate) struct Plan {
    pub(crate) quick: bool,
    filter: Option<String>,
}

impl Plan {
    /// `full` in a full run, `quick` with `--quick`.
    pub(crate) fn scale(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }

    fn wants(&self, group: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| f == group)
    }
}

/// The progress bar (hidden when stderr is not a terminal).
pub(crate) struct Progress(ProgressBar);

impl Progress {
    pub(crate) fn tick(&self, what: &str) {
        self.0.set_message(what.to_owned());
        self.0.inc(1);
    }
}

const GROUPS: [&str; 9] = [
    "l1",
    "hit-ratio",
    "traces",
    "memory",
    "l2",
    "clear",
    "stampede",
    "outage",
    "overheads",
];

/// `--ours-traces [FILTER] [RUNS] [--against FILE]`: the filter and the
/// run count, either or both, in this order; `--against` anywhere.
fn ours_traces(args: &[String]) -> ExitCode {
    let mut args = args.to_vec();
    let against = match args.iter().position(|a| a == "--against") {
        Some(at) if at + 1 < args.len() => {
            let file = args.remove(at + 1);
            args.remove(at);
            let read = std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
                .and_then(|json| score::anchors(&json));
            match read {
                Ok(anchors) => Some(anchors),
                Err(e) => {
                    eprintln!("--against {file}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Some(_) => {
            eprintln!("--against takes the results.json of a full run");
            return ExitCode::FAILURE;
        }
        None => None,
    };
    let mut rest = args.iter();
    let mut next = rest.next();
    let filter = next.filter(|a| a.parse::<usize>().is_err());
    if filter.is_some() {
        next = rest.next();
    }
    let runs = next.and_then(|a| a.parse().ok()).unwrap_or(1);
    let ours = real::ours_only(filter.map(String::as_str), runs);
    if let Some(anchors) = against {
        println!();
        score::score(&ours, &anchors)
            .iter()
            .for_each(|l| println!("{l}"));
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, kind] = args.as_slice()
        && flag == "--probe-memory"
    {
        return probe(kind);
    }
    if args.first().is_some_and(|a| a == "--ours-traces") {
        return ours_traces(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "--ab-l2") {
        return ab_l2::ab_l2(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "--ab") {
        return ab::ab(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "--drop-probe") {
        return drops::drop_probe(&args[1..]);
    }
    let mut plan = Plan {
        quick: false,
        filter: None,
    };
    let mut out = PathBuf::from("target/bench");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => plan.quick = true,
            "--filter" => match it.next() {
                Some(g) if GROUPS.contains(&g.as_str()) => plan.filter = Some(g.clone()),
                other => {
                    eprintln!("--filter takes one of {GROUPS:?}, got {other:?}");
                    return ExitCode::FAILURE;
                }
            },
            "--out" => match it.next() {
                Some(d) => out = PathBuf::from(d),
                None => {
                    eprintln!("--out takes a directory");
                    return ExitCode::FAILURE;
                }
            },
            "-h" | "--help" => {
                println!(
                    "cache-bench [--quick] [--filter {}] [--out DIR]\n\
                     cache-bench --ab hit|entry|facade|gets|mix|puts|replace|new [SECONDS]   (store-memory vs quick_cache, in one process)\n\
                     cache-bench --ab-l2 [SECONDS]   (facade get on an L2 hit vs raw GET, concurrency 64, one redis-server)\n\
                     cache-bench --drop-probe [PARTS]   (a shard's reads while a writer evicts values of PARTS buffers each)\n\
                     cache-bench --ours-traces [TRACE] [RUNS] [--against FILE]   (store-memory alone on the real and synthetic hit-ratio traces whose name contains TRACE; RUNS new store seeds per cell; scored against a full run's results.json)",
                    GROUPS.join("|")
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument `{other}`; try --help");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut report = Report {
        machine: machine(),
        versions: versions(),
        mode: if plan.quick {
            "quick (smoke run; figures are not meaningful)"
        } else {
            "full"
        },
        ..Report::default()
    };
    let units = [
        ("l1", l1::throughput_units(&plan)),
        ("hit-ratio", l1::hit_ratio_units(&plan)),
        ("traces", real::units(&plan)),
        ("memory", 5),
        ("l2", l2::l2_units(&plan)),
        ("clear", clear::clear_units(&plan)),
        ("stampede", resilience::stampede_units(&plan)),
        ("outage", resilience::outage_units(&plan)),
        ("overheads", l2::overhead_units()),
    ];
    let total = units
        .iter()
        .filter(|(g, _)| plan.wants(g))
        .map(|(_, n)| n)
        .sum();
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} {msg}")
    {
        bar.set_style(style);
    }
    let progress = Progress(bar);

    if plan.wants("l1") {
        l1::throughput(&plan, &mut report, &progress);
        throughput_targets(&mut report);
    }
    if plan.wants("hit-ratio") {
        l1::hit_ratio(&plan, &mut report, &progress);
    }
    if plan.wants("traces") {
        real::hit_ratio(&plan, &mut report, &progress);
    }
    if plan.wants("memory") {
        l1::memory(&mut report, &progress);
    }
    if plan.wants("overheads") {
        l2::overheads(&plan, &mut report, &progress);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        if plan.wants("stampede") {
            resilience::stampede(&plan, &mut report, &progress).await;
        }
        if (plan.wants("l2") || plan.wants("clear") || plan.wants("outage"))
            && let Some(mut server) = l2::start_redis(&mut report)
        {
            if plan.wants("l2") {
                l2::l2(&plan, &server, &mut report, &progress).await;
            }
            if plan.wants("clear") {
                clear::clear(&plan, &server, &mut report, &progress).await;
            }
            if plan.wants("outage") {
                resilience::outage(&plan, &mut server, &mut report, &progress).await;
            }
        }
    });
    progress.0.finish_and_clear();

    print!("{}", report.table());
    match report.write(&out) {
        Ok(charts) => {
            println!(
                "\nwrote {0}/report.md, {0}/results.json and {1} charts",
                out.display(),
                charts.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("could not write the report to {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

fn throughput_targets(report: &mut Report) {
    for threads in ["1 thread", "2 threads"] {
        let get_hit = format!("get-hit, {threads}");
        let mix = format!("90/10 get/insert, {threads}");
        let value = |report: &Report, series: &str, kind: Kind| {
            report.value("l1 throughput", series, kind.name())
        };
        let q = value(report, &get_hit, Kind::QuickCache);
        let s = value(report, &get_hit, Kind::StoreMemory);
        let f = value(report, &get_hit, Kind::Facade);
        if let (Some(q), Some(s), Some(f)) = (q, s, f) {
            report.target(
                format!("store-memory get-hit, {threads}"),
                "≥ 1.0× quick_cache",
                format!("{:.2}×", s / q),
                s >= q,
            );
            report.target(
                format!("facade L1 hit, {threads}"),
                "≥ 0.6× quick_cache",
                format!("{:.2}×", f / q),
                f >= 0.6 * q,
            );
        }
        let q = value(report, &mix, Kind::QuickCache);
        let s = value(report, &mix, Kind::StoreMemory);
        if let (Some(q), Some(s)) = (q, s) {
            report.target(
                format!("store-memory 90/10 get/insert, {threads}"),
                "≥ 1.0× quick_cache",
                format!("{:.2}×", s / q),
                s >= q,
            );
        }
    }
}

/// The child-process side of the memory group.
fn probe(kind: &str) -> ExitCode {
    let Some(kind) = Kind::parse(kind) else {
        eprintln!("unknown cache `{kind}`");
        return ExitCode::FAILURE;
    };
    match l1::probe_memory(kind) {
        Some(bytes) => {
            println!("{bytes:.1}");
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

/// CPU model, core count and memory, for the report header.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kb| {
            format!(", {:.0} GiB", kb as f64 / 1_048_576.0)
        });
    format!("{model}, {cores} cores{mem}")
}

/// The versions the figures were measured against: the anchors and the raw
/// Redis client as this build links them (`build.rs` reads `Cargo.lock`),
/// and the `redis-server` the L2 groups start.
fn versions() -> String {
    let server = cache_testkit::redis_server_binary()
        .ok()
        .and_then(|bin| {
            std::process::Command::new(bin)
                .arg("--version")
                .output()
                .ok()
        })
        .and_then(|out| {
            // "Redis server v=7.0.15 sha=... malloc=... bits=64 build=..."
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .find_map(|w| w.strip_prefix("v="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "not found".to_owned());
    format!("{}; redis-server {server}", env!("ANCHOR_VERSIONS"))
}

/// The runtime of the runs that need one (two workers, like the machine's
/// cores); `None`, said on stderr, if it cannot start.
pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .inspect_err(|e| eprintln!("cannot start a tokio runtime: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_report_names_the_locked_version_of_every_anchor() {
        let versions = super::versions();
        for anchor in ["quick_cache", "moka", "lru", "redis"] {
            let version = versions
                .split([',', ';'])
                .map(str::trim)
                .find_map(|part| part.strip_prefix(anchor)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{anchor} missing from `{versions}`"));
            assert!(
                version.starts_with(|c: char| c.is_ascii_digit()) && version.contains('.'),
                "{anchor}: `{version}` is not a version"
            );
        }
    }
}
