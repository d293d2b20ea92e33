//! Several cache instances under concurrent load, measured phase by phase.
//!
//! The source is deterministic: key `k` at version `v` has the value
//! `k * VERSION_SPAN + v`, so every answer can be checked. An invalidation bumps
//! the key's version at the source and then calls `Cache::remove` on one
//! instance; from its deadline on (one second after Redis is back), an answer
//! with an older version is *stale after invalidate*.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use resilient_cache::Cache;
use serde::Serialize;

/// Values are `key * VERSION_SPAN + version`.
pub(crate) const VERSION_SPAN: u64 = 1_000_000;
/// How long the source takes to answer.
const SOURCE_LATENCY: Duration = Duration::from_millis(2);
/// How long after Redis is back an invalidation must have reached everyone.
pub(crate) const GRACE: Duration = Duration::from_secs(1);
/// Keys never loaded: reads of these are L1 misses that go to L2 (probes).
const PROBE_BASE: u64 = 1 << 40;

/// The source of truth: versions per key and a count of loads.
#[derive(Default)]
pub(crate) struct Source {
    versions: RwLock<HashMap<u64, u64>>,
    loads: AtomicU64,
}

impl Source {
    /// `key`'s version now.
    pub(crate) fn version(&self, key: u64) -> u64 {
        self.versions.read().get(&key).copied().unwrap_or(0)
    }

    /// Bumps `key`'s version; returns the new one.
    pub(crate) fn bump(&self, key: u64) -> u64 {
        let mut v = self.versions.write();
        let e = v.entry(key).or_insert(0);
        *e += 1;
        *e
    }

    /// Loads so far.
    pub(crate) fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    async fn load(&self, key: u64) -> Option<u64> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(SOURCE_LATENCY).await;
        Some(key * VERSION_SPAN + self.version(key))
    }
}

/// Invalidated keys: the version each must be served at (at least), and from
/// when on.
#[derive(Default)]
pub(crate) struct Invalidated {
    keys: RwLock<HashMap<u64, (u64, Option<Instant>)>>,
}

impl Invalidated {
    /// Records that `key` is at `version` now; the deadline is set later.
    pub(crate) fn record(&self, key: u64, version: u64) {
        self.keys.write().insert(key, (version, None));
    }

    /// Every recorded key without a deadline must be served new from `at` on.
    pub(crate) fn set_deadline(&self, at: Instant) {
        for (_, d) in self.keys.write().values_mut() {
            d.get_or_insert(at);
        }
    }

    fn required(&self, key: u64, started: Instant) -> Option<u64> {
        let keys = self.keys.read();
        let (version, deadline) = keys.get(&key)?;
        deadline.is_some_and(|d| started >= d).then_some(*version)
    }
}

/// What one phase saw.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct PhaseStats {
    /// Phase name.
    pub(crate) name: String,
    /// How long it lasted, in seconds.
    pub(crate) seconds: f64,
    /// Calls made.
    pub(crate) calls: u64,
    /// Calls that returned an error.
    pub(crate) errors: u64,
    /// Answers that do not belong to the key, or come from the future.
    pub(crate) wrong: u64,
    /// Answers older than an invalidation whose deadline had passed.
    pub(crate) stale_after_invalidate: u64,
    /// Loads that reached the source.
    pub(crate) loads: u64,
    /// L1 entries over all instances at the end of the phase.
    pub(crate) l1_entries: u64,
    /// Median latency in microseconds.
    pub(crate) p50_us: f64,
    /// 99th percentile, in microseconds.
    pub(crate) p99_us: f64,
    /// Slowest call, in milliseconds.
    pub(crate) max_ms: f64,
    #[serde(skip)]
    pub(crate) latencies_ns: Vec<u32>,
}

impl PhaseStats {
    fn merge(&mut self, other: &PhaseStats) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.wrong += other.wrong;
        self.stale_after_invalidate += other.stale_after_invalidate;
        self.latencies_ns.extend_from_slice(&other.latencies_ns);
    }

    pub(crate) fn finish(&mut self) {
        let l = &mut self.latencies_ns;
        l.sort_unstable();
        let at = |q: f64| {
            if l.is_empty() {
                0.0
            } else {
                let i = ((l.len() - 1) as f64 * q).round() as usize;
                f64::from(l[i])
            }
        };
        self.p50_us = at(0.5) / 1_000.0;
        self.p99_us = at(0.99) / 1_000.0;
        self.max_ms = at(1.0) / 1_000_000.0;
        l.clear();
        l.shrink_to_fit();
    }
}

/// The instances of one scenario and their load.
pub(crate) struct Fleet {
    pub(crate) caches: Vec<Cache<u64, u64>>,
    pub(crate) source: Arc<Source>,
    pub(crate) invalidated: Arc<Invalidated>,
    pub(crate) hot_keys: u64,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Stops the probers (they outlive the load while L2 recovery is watched).
    probes_stop: Arc<AtomicBool>,
    probes: Arc<AtomicU64>,
    /// A [`watch_l2`](Self::watch_l2) task owns stopping the probers.
    watched: bool,
    tasks: Vec<tokio::task::JoinHandle<Vec<PhaseStats>>>,
    /// Name, start, source loads and L1 entries at the start.
    phases: Vec<(String, Instant, u64, u64)>,
    bypass: Option<Bypass>,
}

/// Measures how long any instance's breaker is not closed (polled every 5 ms).
pub(crate) struct Bypass {
    stop: Arc<AtomicBool>,
    nanos: Arc<AtomicU64>,
}

impl Bypass {
    /// Stops watching; the time measured.
    pub(crate) fn stop(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Drop for Fleet {
    /// Probers that nobody watches stop with the fleet.
    fn drop(&mut self) {
        if !self.watched {
            self.probes_stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Load tasks per fleet (the concurrency of the load).
pub(crate) const CONCURRENCY: usize = 64;
/// Phases a fleet can record.
const MAX_PHASES: usize = 8;

impl Fleet {
    /// Instances built by `build(i)`, sharing one source.
    pub(crate) fn new(caches: Vec<Cache<u64, u64>>, hot_keys: u64) -> Fleet {
        Fleet {
            caches,
            source: Arc::new(Source::default()),
            invalidated: Arc::new(Invalidated::default()),
            hot_keys,
            phase: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            probes_stop: Arc::new(AtomicBool::new(false)),
            probes: Arc::new(AtomicU64::new(0)),
            watched: false,
            tasks: Vec::new(),
            phases: Vec::new(),
            bypass: None,
        }
    }

    /// Loads every hot key on every instance once.
    pub(crate) async fn warm(&self) {
        for c in &self.caches {
            for k in 0..self.hot_keys {
                let src = self.source.clone();
                let _ = c
                    .get_or_load(k, move |k| async move { src.load(k).await })
                    .await;
            }
        }
    }

    /// Waits until every instance's bus is connected (bounded).
    pub(crate) async fn wait_for_buses(&self) -> bool {
        for _ in 0..500 {
            if self.caches.iter().all(|c| c.tiered().bus_connected()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Starts the load: `CONCURRENCY` tasks spread over the instances, each
    /// reading hot keys (uniformly) with a 1 ms pause between calls.
    pub(crate) fn start_load(&mut self, first_phase: &str) {
        self.begin_phase(first_phase);
        for t in 0..CONCURRENCY {
            let cache = self.caches[t % self.caches.len()].clone();
            let source = self.source.clone();
            let invalidated = self.invalidated.clone();
            let phase = self.phase.clone();
            let stop = self.stop.clone();
            let hot = self.hot_keys;
            self.tasks.push(tokio::spawn(async move {
                let mut stats: Vec<PhaseStats> = vec![PhaseStats::default(); MAX_PHASES];
                let mut x = (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = x % hot;
                    let p = phase.load(Ordering::Relaxed).min(MAX_PHASES - 1);
                    let started = Instant::now();
                    let src = source.clone();
                    let got = cache
                        .get_or_load(key, move |k| async move { src.load(k).await })
                        .await;
                    let took = started.elapsed();
                    let s = &mut stats[p];
                    s.calls += 1;
                    s.latencies_ns
                        .push(u32::try_from(took.as_nanos()).unwrap_or(u32::MAX));
                    match got {
                        Ok(Some(v)) => {
                            let (k, version) = (v / VERSION_SPAN, v % VERSION_SPAN);
                            if k != key || version > source.version(key) {
                                s.wrong += 1;
                            } else if invalidated
                                .required(key, started)
                                .is_some_and(|need| version < need)
                            {
                                s.stale_after_invalidate += 1;
                            }
                        }
                        Ok(None) => s.wrong += 1,
                        Err(_) => s.errors += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                stats
            }));
        }
        // One prober per instance: reads of never-loaded keys go to L2, so the
        // breaker gets its probes even when every hot key is an L1 hit.
        for cache in &self.caches {
            let cache = cache.clone();
            let stop = self.probes_stop.clone();
            let probes = self.probes.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = probes.fetch_add(1, Ordering::Relaxed);
                    let _ = cache.get(&(PROBE_BASE + n)).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    }

    /// Starts measuring L2 bypass: the time any breaker is not closed.
    pub(crate) fn watch_bypass(&mut self) {
        let (stop, nanos) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let caches = self.caches.clone();
        let (s, n) = (stop.clone(), nanos.clone());
        tokio::spawn(async move {
            let mut last = Instant::now();
            while !s.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let now = Instant::now();
                let open = caches.iter().any(|c| {
                    c.tiered()
                        .breaker()
                        .is_some_and(|b| b.state().as_str() != "closed")
                });
                if open {
                    let add =
                        u64::try_from(now.duration_since(last).as_nanos()).unwrap_or(u64::MAX);
                    n.fetch_add(add, Ordering::Relaxed);
                }
                last = now;
            }
        });
        self.bypass = Some(Bypass { stop, nanos });
    }

    /// The bypass watch started by [`watch_bypass`](Self::watch_bypass).
    pub(crate) fn take_bypass(&mut self) -> Bypass {
        self.bypass.take().unwrap_or(Bypass {
            stop: Arc::new(AtomicBool::new(false)),
            nanos: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Starts a new phase now.
    pub(crate) fn begin_phase(&mut self, name: &str) {
        if !self.phases.is_empty() {
            self.phase.fetch_add(1, Ordering::Relaxed);
        }
        let entries = self.l1_entries();
        self.phases.push((
            name.to_owned(),
            Instant::now(),
            self.source.loads(),
            entries,
        ));
    }

    /// L1 entries over all instances.
    pub(crate) fn l1_entries(&self) -> u64 {
        self.caches
            .iter()
            .map(|c| c.tiered().l1().len() as u64)
            .sum()
    }

    /// Stops the load and returns the per-phase figures.
    pub(crate) async fn finish(mut self) -> Vec<PhaseStats> {
        let end = Instant::now();
        let end_loads = self.source.loads();
        let end_entries = self.l1_entries();
        self.stop.store(true, Ordering::Relaxed);
        let mut merged: Vec<PhaseStats> = vec![PhaseStats::default(); self.phases.len()];
        for task in self.tasks.drain(..) {
            if let Ok(stats) = task.await {
                for (m, s) in merged.iter_mut().zip(&stats) {
                    m.merge(s);
                }
            }
        }
        for (i, m) in merged.iter_mut().enumerate() {
            let (name, started, loads_at, _) = &self.phases[i];
            let (ended, loads_end, entries_end) = match self.phases.get(i + 1) {
                Some((_, next, next_loads, next_entries)) => (*next, *next_loads, *next_entries),
                None => (end, end_loads, end_entries),
            };
            m.name.clone_from(name);
            m.seconds = ended.duration_since(*started).as_secs_f64();
            m.loads = loads_end - loads_at;
            m.l1_entries = entries_end;
            m.finish();
        }
        merged
    }

    /// Watches (up to `limit`, in the background) until every instance's
    /// breaker is closed and its recovery queue is empty; how long that took.
    pub(crate) fn watch_l2(
        &mut self,
        limit: Duration,
    ) -> tokio::task::JoinHandle<Option<Duration>> {
        let caches = self.caches.clone();
        let probes_stop = self.probes_stop.clone();
        self.watched = true;
        tokio::spawn(async move {
            let _stop_probes = StopOnDrop(probes_stop);
            let started = Instant::now();
            while started.elapsed() < limit {
                let ready = caches.iter().all(|c| {
                    c.tiered()
                        .breaker()
                        .is_none_or(|b| b.state().as_str() == "closed")
                        && c.tiered().recovery_pending() == 0
                });
                if ready {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            None
        })
    }

    /// Invalidates `count` hot keys from instance 0: bump at the source, then
    /// `remove` through the cache (during an outage its L2 part is queued).
    pub(crate) async fn invalidate(&self, count: u64) -> u64 {
        let mut done = 0;
        for i in 0..count.min(self.hot_keys) {
            let key = (i * 7 + 3) % self.hot_keys;
            let version = self.source.bump(key);
            self.invalidated.record(key, version);
            if self.caches[0].remove(&key).await.is_ok() {
                done += 1;
            }
        }
        done
    }

    /// Values kept out of the tiers because their key was invalidated while
    /// they were read (`TieredStats::fenced`), summed over the instances.
    pub(crate) fn fenced(&self) -> u64 {
        self.caches.iter().map(|c| c.tiered().stats().fenced).sum()
    }

    /// Bus counters summed over the instances: (gaps, reconnects).
    pub(crate) fn bus_counters(&self) -> (u64, u64) {
        self.caches.iter().fold((0, 0), |(g, r), c| {
            let s = c.tiered().stats();
            (g + s.bus_gaps, r + s.bus_reconnects)
        })
    }
}
