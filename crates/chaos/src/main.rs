//! `cargo xtask chaos`: several cache instances under concurrent load, through
//! the faults the cache exists for, against real `redis-server` processes and a
//! real cluster with replicas, all on loopback.
//!
//! ```text
//! cargo xtask chaos [--quick] [--filter NAME] [--out DIR] [--breaker consecutive]
//! ```
//!
//! `--breaker consecutive` runs the fault scenarios with the breaker policy the
//! cache had before it was tuned (open after 5 consecutive failures, 5 s open
//! wait): the A/B behind the default.
//!
//! Every scenario runs three instances (64 concurrent callers over 200 hot keys
//! that fit L1) with a deterministic source, in phases (baseline, fault, after),
//! and reports per phase: calls, caller errors, wrong values, values served after
//! they were invalidated (stale-after-invalidate), source loads, L1 entries and
//! latency; and the time until L2 is used again. During each fault, one instance
//! invalidates keys the others hold.
//!
//! The figures it holds the cache to (exit code 1 when one is missed):
//! - a healthy idle bus: no gap, no reconnect, L1 unchanged;
//! - every scenario: 0 caller errors, 0 wrong values, 0 stale-after-invalidate
//!   (an invalidation made during an outage reaches every instance within 1 s of
//!   Redis being back);
//! - source loads during the fault and the 5 s after it: at most one per
//!   invalidated key per instance (no hot key goes back to the source because of
//!   the outage);
//! - `churn` (Redis healthy, keys changed and invalidated while farther
//!   instances reload them): once it stops, no key older than the source in
//!   L2 or through any instance.
#![forbid(unsafe_code)]

mod churn;
mod cluster;
mod harness;
mod partition;
mod report;
mod stampede;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cache_testkit::{FaultProxy, RedisServer};
use harness::{CONCURRENCY, Fleet, GRACE, PhaseStats};
use resilient_cache::Cache;
use serde::Serialize;

/// Set by `--breaker consecutive`: the pre-tuning breaker policy, for A/B runs.
static LEGACY_BREAKER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The breaker policy of this run's caches (`None`: the cache's default).
fn breaker_policy() -> Option<resilient_cache::BreakerBuilder> {
    LEGACY_BREAKER.get().copied().unwrap_or(false).then(|| {
        resilient_cache::BreakerBuilder::default()
            .consecutive_failures(5)
            .wait_in_open(Duration::from_secs(5))
    })
}

/// Instances per scenario.
const INSTANCES: usize = 3;
/// Hot keys (they fit every L1).
const HOT_KEYS: u64 = 200;
/// Keys invalidated during each fault.
const INVALIDATIONS: u64 = 10;
/// How long to wait for L2 to be used again after a fault.
const L2_WATCH: Duration = Duration::from_secs(15);

#[derive(Clone, Copy)]
struct Timing {
    idle: Duration,
    baseline: Duration,
    fault: Duration,
    after: Duration,
    /// Slots moved in the slot-migration scenario (at least the hot keys' own).
    slots: usize,
    /// Cold keys stampeded, one after the other.
    rounds: u64,
    /// Warm (and as many cold) keys read in the OOM scenario.
    oom_keys: u64,
    /// How long keys are churned in the churn scenario.
    churn: Duration,
}

const FULL: Timing = Timing {
    idle: Duration::from_secs(60),
    baseline: Duration::from_secs(2),
    fault: Duration::from_secs(3),
    after: Duration::from_secs(5),
    slots: 1_000,
    rounds: 5,
    oom_keys: 2_000,
    churn: Duration::from_secs(10),
};

const QUICK: Timing = Timing {
    idle: Duration::from_secs(5),
    baseline: Duration::from_secs(1),
    fault: Duration::from_secs(3),
    after: Duration::from_secs(5),
    slots: 300,
    rounds: 3,
    oom_keys: 500,
    churn: Duration::from_secs(4),
};

/// One figure a scenario must reach.
#[derive(Debug, Serialize)]
pub(crate) struct Check {
    what: String,
    ok: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Outcome {
    scenario: &'static str,
    about: &'static str,
    phases: Vec<PhaseStats>,
    /// Seconds from the end of the fault until every breaker was closed and
    /// every recovery queue empty.
    l2_used_again_s: Option<f64>,
    /// Seconds any instance's breaker was not closed, from the fault's start to
    /// the end of the after phase.
    l2_bypass_s: Option<f64>,
    checks: Vec<Check>,
}

pub(crate) fn check(what: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        what: what.into(),
        ok,
        detail: detail.into(),
    }
}

/// The checks every loaded scenario makes of its callers' answers, summed
/// over `phases`: no caller errors, no wrong values.
pub(crate) fn answer_checks(phases: &[PhaseStats]) -> [Check; 2] {
    let (errors, wrong) = phases
        .iter()
        .fold((0, 0), |(e, w), p| (e + p.errors, w + p.wrong));
    [
        check("caller errors", errors == 0, format!("{errors}")),
        check("wrong values", wrong == 0, format!("{wrong}")),
    ]
}

fn main() -> std::process::ExitCode {
    let mut timing = FULL;
    let mut filter: Option<String> = None;
    let mut out = PathBuf::from("target/chaos");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => timing = QUICK,
            "--filter" => filter = args.next(),
            "--out" => out = args.next().map_or(out, PathBuf::from),
            "--breaker" => {
                let legacy = args.next().as_deref() == Some("consecutive");
                let _ = LEGACY_BREAKER.set(legacy);
            }
            "-h" | "--help" => {
                println!(
                    "cargo xtask chaos [--quick] [--filter NAME] [--out DIR] [--breaker consecutive]"
                );
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("chaos: unknown argument {other}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos: no runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcomes = runtime.block_on(run_all(timing, filter.as_deref()));
    let report = report::render(&outcomes);
    println!("{report}");
    if let Err(e) = report::write_report(&out, &report, &outcomes) {
        eprintln!(
            "chaos: could not write the report to {}: {e}",
            out.display()
        );
    }
    let failed: Vec<String> = outcomes
        .iter()
        .flat_map(|o| {
            o.checks
                .iter()
                .filter(|c| !c.ok)
                .map(move |c| format!("{}: {} ({})", o.scenario, c.what, c.detail))
        })
        .collect();
    let total: usize = outcomes.iter().map(|o| o.checks.len()).sum();
    println!(
        "chaos: {} passed, {} failed",
        total - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        for f in &failed {
            eprintln!("chaos: MISSED {f}");
        }
        std::process::ExitCode::FAILURE
    }
}

type Scenario = (&'static str, &'static str);

const SCENARIOS: &[Scenario] = &[
    (
        "idle-bus",
        "a healthy, idle Redis watched: the bus must not cry wolf",
    ),
    (
        "kill-restart",
        "redis-server SIGKILLed, restarted empty after the fault",
    ),
    ("pause", "CLIENT PAUSE for the length of the fault"),
    (
        "stall",
        "one 150 ms CLIENT PAUSE (a burst of timeouts) under L2-heavy load: a fourth instance with a 16-entry L1",
    ),
    (
        "latency",
        "300 ms added to every packet by the fault proxy (op timeout 100 ms)",
    ),
    (
        "black-hole",
        "the fault proxy swallows every byte, connections stay open",
    ),
    (
        "partition",
        "one instance's link to a healthy Redis black-holed while another invalidates keys it holds",
    ),
    (
        "partition-invalidator",
        "the instance that invalidates is the one cut off: its removals wait for its link while the others hold the keys",
    ),
    (
        "failover",
        "cluster with replicas: the master holding the bus is killed, a replica promoted",
    ),
    (
        "slot-migration",
        "cluster: the slots of every hot key and of the bus, and more (1,000 in all; 300 with --quick), move to another master under load; a fourth instance with a 16-entry L1 sends most of its reads to L2",
    ),
    (
        "churn",
        "Redis healthy: a writer 3 ms from Redis changes keys and invalidates them in bursts of three while three readers 6, 8 and 10 ms away reload them; then every key read through every reader and from L2",
    ),
    (
        "stampede",
        "4 instances × 250 concurrent callers on one cold key (the source takes 200 ms), several keys in turn",
    ),
    (
        "stampede-down",
        "the same stampede with redis-server killed: local single flight on each instance",
    ),
    (
        "stampede-cancel",
        "the same stampede, every other caller (the first on each instance included) cancelled mid-load",
    ),
    (
        "oom",
        "redis at maxmemory with noeviction: warm keys read from L2, cold keys loaded (writes refused)",
    ),
];

async fn run_all(t: Timing, filter: Option<&str>) -> Vec<Outcome> {
    let mut out = Vec::new();
    for &(name, about) in SCENARIOS {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        println!("chaos: {name} ({about})");
        let started = Instant::now();
        let result = match name {
            "idle-bus" => idle_bus(t).await,
            "kill-restart" => standalone(t, Fault::Kill, None).await,
            "pause" => standalone(t, Fault::Pause, None).await,
            "stall" => standalone(t, Fault::Stall, None).await,
            "latency" => standalone(t, Fault::Latency, None).await,
            "black-hole" => standalone(t, Fault::BlackHole, None).await,
            "partition" => partition::partition(t, partition::Cut::Reader).await,
            "partition-invalidator" => partition::partition(t, partition::Cut::Invalidator).await,
            "failover" => cluster::failover(t).await,
            "slot-migration" => cluster::slot_migration(t).await,
            "churn" => churn::churn(t).await,
            "stampede" => stampede::fleet_stampede(t.rounds, false, false).await,
            "stampede-down" => stampede::fleet_stampede(t.rounds, true, false).await,
            "stampede-cancel" => stampede::fleet_stampede(t.rounds, false, true).await,
            _ => stampede::oom(t.oom_keys).await,
        };
        let m = match result {
            Ok(m) => m,
            Err(e) => Measured::new(Vec::new(), vec![check("the scenario ran", false, e)]),
        };
        println!(
            "chaos: {name} done in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        out.push(Outcome {
            scenario: name,
            about,
            phases: m.phases,
            l2_used_again_s: m.l2_again.map(|d| d.as_secs_f64()),
            l2_bypass_s: m.bypass.map(|d| d.as_secs_f64()),
            checks: m.checks,
        });
    }
    out
}

/// What a scenario measured.
pub(crate) struct Measured {
    phases: Vec<PhaseStats>,
    /// From the fault's end until every breaker closed and every queue drained.
    l2_again: Option<Duration>,
    /// Time any instance's breaker was not closed, from the fault's start.
    bypass: Option<Duration>,
    checks: Vec<Check>,
}

impl Measured {
    pub(crate) fn new(phases: Vec<PhaseStats>, checks: Vec<Check>) -> Self {
        Measured {
            phases,
            l2_again: None,
            bypass: None,
            checks,
        }
    }
}

pub(crate) type Run = Result<Measured, String>;

fn cache(name: &str, redis: &Redis) -> Result<Cache<u64, u64>, String> {
    let mut b = Cache::builder(name)
        .default_ttl(Duration::from_secs(60))
        .stale_window(Duration::from_secs(60));
    if let Some(policy) = breaker_policy() {
        b = b.breaker(policy);
    }
    let b = match redis {
        Redis::Url(u) => b.redis_url(u.clone()),
        Redis::Cluster(urls) => b.redis_cluster(urls.clone()),
    };
    b.build().map_err(|e| e.to_string())
}

enum Redis {
    Url(String),
    Cluster(Vec<String>),
}

async fn fleet(name: &str, redis: &Redis) -> Result<Fleet, String> {
    fleet_with(name, |_| redis, false).await
}

/// A fleet whose instance `i` reaches Redis as `redis(i)`; with `l2_heavy`,
/// one more instance (number [`INSTANCES`]) whose L1 holds only 16 entries, so
/// most of its reads go to L2 (the breaker sees real traffic).
async fn fleet_with<'r>(
    name: &str,
    redis: impl Fn(usize) -> &'r Redis,
    l2_heavy: bool,
) -> Result<Fleet, String> {
    let mut caches = (0..INSTANCES)
        .map(|i| cache(name, redis(i)))
        .collect::<Result<Vec<_>, _>>()?;
    if l2_heavy {
        let mut b = Cache::builder(name)
            .max_entries(16)
            .default_ttl(Duration::from_secs(60))
            .stale_window(Duration::from_secs(60));
        if let Some(policy) = breaker_policy() {
            b = b.breaker(policy);
        }
        let b = match redis(INSTANCES) {
            Redis::Url(u) => b.redis_url(u.clone()),
            Redis::Cluster(urls) => b.redis_cluster(urls.clone()),
        };
        caches.push(b.build().map_err(|e| e.to_string())?);
    }
    let fleet = Fleet::new(caches, HOT_KEYS);
    if !fleet.wait_for_buses().await {
        return Err("the invalidation buses did not connect".into());
    }
    fleet.warm().await;
    Ok(fleet)
}

fn connections_received(server: &RedisServer) -> Result<u64, String> {
    let info = server
        .connect()
        .and_then(|mut c| c.cmd(&["INFO", "stats"]))
        .map_err(|e| e.to_string())?
        .as_text()
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no total_connections_received in INFO".to_owned())
}

async fn idle_bus(t: Timing) -> Run {
    let server = RedisServer::start().map_err(|e| e.to_string())?;
    let f = fleet("idle", &Redis::Url(server.url())).await?;
    let entries = f.l1_entries();
    let conns = connections_received(&server)?;
    let started = Instant::now();
    tokio::time::sleep(t.idle).await;
    let (gaps, reconnects) = f.bus_counters();
    let after = f.l1_entries();
    let new_conns = connections_received(&server)? - conns;
    let phase = PhaseStats {
        name: "idle".into(),
        seconds: started.elapsed().as_secs_f64(),
        l1_entries: after,
        ..PhaseStats::default()
    };
    let checks = vec![
        check("bus gaps", gaps == 0, format!("{gaps}")),
        check("bus reconnects", reconnects == 0, format!("{reconnects}")),
        check(
            "connections Redis received while idle (1 = this check's own)",
            new_conns == 1,
            format!("{new_conns}"),
        ),
        check(
            "L1 unchanged",
            after == entries,
            format!("{entries} -> {after}"),
        ),
    ];
    Ok(Measured::new(vec![phase], checks))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Pause,
    /// One 150 ms `CLIENT PAUSE`: a burst of timeouts, not an outage.
    Stall,
    Latency,
    BlackHole,
}

/// A fault on one redis-server, reached by every instance through the fault
/// proxy, or with `cut_off = Some(i)` by instance `i` alone (the others
/// connect directly and see a healthy Redis: a partition).
async fn standalone(t: Timing, fault: Fault, cut_off: Option<usize>) -> Run {
    let mut server = RedisServer::start().map_err(|e| e.to_string())?;
    let proxy = FaultProxy::start(server.addr()).map_err(|e| e.to_string())?;
    let name = match fault {
        Fault::Kill => "kill",
        Fault::Pause => "pause",
        Fault::Stall => "stall",
        Fault::Latency => "latency",
        Fault::BlackHole => "blackhole",
    };
    let (faulty, direct) = (Redis::Url(proxy.url()), Redis::Url(server.url()));
    let redis = |i| match cut_off {
        Some(cut) if cut != i => &direct,
        _ => &faulty,
    };
    let mut f = fleet_with(name, redis, fault == Fault::Stall).await?;
    f.start_load("baseline");
    tokio::time::sleep(t.baseline).await;
    f.begin_phase("fault");
    f.watch_bypass();
    let fault_started = Instant::now();
    match fault {
        Fault::Kill => server.kill(),
        Fault::Pause | Fault::Stall => {
            let pause = if fault == Fault::Stall {
                Duration::from_millis(150)
            } else {
                t.fault
            };
            let ms = pause.as_millis().to_string();
            server
                .connect()
                .and_then(|mut c| c.cmd(&["CLIENT", "PAUSE", &ms]))
                .map_err(|e| e.to_string())?;
        }
        Fault::Latency => proxy.set_latency(Duration::from_millis(300)),
        Fault::BlackHole => proxy.black_hole(),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let invalidated = f.invalidate(INVALIDATIONS).await;
    tokio::time::sleep(t.fault.saturating_sub(fault_started.elapsed())).await;
    match fault {
        Fault::Kill => {
            tokio::task::block_in_place(|| server.restart()).map_err(|e| e.to_string())?
        }
        Fault::Pause | Fault::Stall => {}
        Fault::Latency | Fault::BlackHole => proxy.heal(),
    }
    let mut run = outage_end(t, f, invalidated).await;
    if fault == Fault::Stall
        && let Ok(m) = &mut run
    {
        let bypass = m.bypass.unwrap_or(Duration::MAX);
        m.checks.push(check(
            "L2 bypass after one 150 ms stall < 1 s",
            bypass < Duration::from_secs(1),
            format!("{:.2} s", bypass.as_secs_f64()),
        ));
    }
    if fault == Fault::Kill
        && let Ok(m) = &mut run
    {
        let again = m.l2_again.unwrap_or(Duration::MAX);
        m.checks.push(check(
            "L2 used again ≤ 1 s after the restarted Redis answers",
            again <= Duration::from_secs(1),
            format!("{:.2} s", again.as_secs_f64()),
        ));
    }
    run
}

/// The common end of a fault: Redis is back now; measure until L2 is used
/// again and through the after phase; judge the figures.
async fn outage_end(t: Timing, mut f: Fleet, invalidated: u64) -> Run {
    let back = Instant::now();
    f.invalidated.set_deadline(back + GRACE);
    f.begin_phase("after");
    let watch = f.watch_l2(L2_WATCH);
    tokio::time::sleep(t.after).await;
    let (gaps, _) = f.bus_counters();
    let fenced = f.fenced();
    let instances = f.caches.len() as u64;
    let f_bypass = f.take_bypass();
    let phases = f.finish().await;
    let l2_again = watch.await.ok().flatten();
    let mut checks = Vec::from(answer_checks(&phases));
    let sum = |get: fn(&PhaseStats) -> u64| phases.iter().map(get).sum::<u64>();
    checks.push(check(
        "stale after invalidate (1 s after Redis is back)",
        sum(|p| p.stale_after_invalidate) == 0,
        format!("{}", sum(|p| p.stale_after_invalidate)),
    ));
    checks.push(check(
        "invalidations accepted during the fault",
        invalidated == INVALIDATIONS,
        format!("{invalidated} of {INVALIDATIONS}"),
    ));
    let loads: u64 = phases.iter().skip(1).map(|p| p.loads).sum();
    let allowed = invalidated * instances;
    checks.push(check(
        "source loads in the fault and the 5 s after ≤ invalidated keys × instances",
        loads <= allowed,
        format!("{loads} ≤ {allowed} (gaps handled by the policy: {gaps}; reads fenced: {fenced})"),
    ));
    checks.push(check(
        "load ran with every caller",
        phases.first().is_some_and(|p| p.calls > CONCURRENCY as u64),
        format!("{} baseline calls", phases.first().map_or(0, |p| p.calls)),
    ));
    let bypass = f_bypass.stop();
    Ok(Measured {
        phases,
        l2_again,
        bypass: Some(bypass),
        checks,
    })
}
