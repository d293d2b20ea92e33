//! The scripted story: two instances over one Redis, through a stampede, hot
//! traffic, L2 hits on the second instance, unknown ids, a correction seen
//! across instances, and a Redis outage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_testkit::{RedisServer, http_get};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::fleet::Instance;

/// One step of the story, for the final table.
pub(crate) struct Step {
    pub(crate) name: String,
    pub(crate) requests: usize,
    pub(crate) failed: usize,
    pub(crate) source_calls: u64,
    pub(crate) detail: String,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Sends a GET for each `(instance, id)`, at most `parallel` at a time. Returns
/// the latencies of answered requests (200 or 404) and the number of failures.
async fn drive(requests: Vec<(SocketAddr, u64)>, parallel: usize) -> (Vec<Duration>, usize) {
    let permits = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(requests.len());
    for (addr, id) in requests {
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            let start = Instant::now();
            let response = http_get(addr, &format!("/predictions/{id}")).await.ok()?;
            matches!(response.status, 200 | 404).then(|| start.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await.ok().flatten() {
            Some(l) => latencies.push(l),
            None => failed += 1,
        }
    }
    latencies.sort();
    (latencies, failed)
}

/// `POST path` with a JSON body over HTTP/1.0; the status code.
async fn post_json(addr: SocketAddr, path: &str, body: &str) -> Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {raw:?}").into())
}

/// Instance A for even `i`, B for odd: a load split over both.
fn alternate(fleet: &[Instance; 2], i: u64) -> SocketAddr {
    fleet[(i % 2) as usize].addr
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// An instance's counters (`GET /stats`).
async fn stats(addr: SocketAddr) -> Result<Value> {
    let page = http_get(addr, "/stats").await?;
    Ok(serde_json::from_str(&page.body)?)
}

fn field(v: &Value, name: &str) -> u64 {
    v.get(name).and_then(Value::as_u64).unwrap_or(0)
}

/// Counters of both instances, to take differences around a step.
struct Snapshot([Value; 2]);

impl Snapshot {
    async fn take(fleet: &[Instance; 2]) -> Result<Self> {
        Ok(Self([
            stats(fleet[0].addr).await?,
            stats(fleet[1].addr).await?,
        ]))
    }

    /// `name` on instance `i` since `before`.
    fn delta(&self, before: &Self, i: usize, name: &str) -> u64 {
        field(&self.0[i], name).saturating_sub(field(&before.0[i], name))
    }

    /// Source calls of both instances since `before`.
    fn calls(&self, before: &Self) -> u64 {
        self.delta(before, 0, "source_calls") + self.delta(before, 1, "source_calls")
    }
}

/// The `status` field of an instance's `/health/cache`.
pub(crate) async fn health(addr: SocketAddr) -> String {
    let Ok(page) = http_get(addr, "/health/cache").await else {
        return "unreachable".into();
    };
    serde_json::from_str::<Value>(&page.body)
        .ok()
        .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Runs the story; prints each step as it ends and returns them all. Fails
/// when a step does not show what it claims (no L2 hits on B, a correction
/// never seen there).
pub(crate) async fn run(
    fleet: &[Instance; 2],
    redis: Option<&mut RedisServer>,
    shared: bool,
    quick: bool,
) -> Result<Vec<Step>> {
    let (a, b) = (fleet[0].addr, fleet[1].addr);
    let scale = |full: usize, q: usize| if quick { q } else { full };
    let mut steps = Vec::new();
    let mut push = |step: Step| {
        println!(
            "  done: {} ({} source calls) — {}",
            step.name, step.source_calls, step.detail
        );
        steps.push(step);
    };

    // 1. A cold stampede on one id, half of it on each instance.
    let before = Snapshot::take(fleet).await?;
    let requests = (0..1000).map(|i| (alternate(fleet, i), 7)).collect();
    let (lat, failed) = drive(requests, 128).await;
    let after = Snapshot::take(fleet).await?;
    push(Step {
        name: "cold stampede: 1,000 requests for one id, half on each instance".into(),
        requests: 1000,
        failed,
        source_calls: after.calls(&before),
        detail: format!(
            "{}p50 {:.1} ms, p99 {:.1} ms",
            if shared {
                "one load for the fleet (a lease in Redis); "
            } else {
                "one load per instance; "
            },
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        ),
    });

    // 2. Hot, skewed traffic over 200 ids on A.
    let n = scale(20_000, 2_000);
    let before = after;
    // Every id once in a while, 20 hot ids in between.
    let id = |i: u64| {
        if i.is_multiple_of(2) {
            (i / 2) % 200
        } else {
            (i * 31) % 20
        }
    };
    let requests = (0..n as u64).map(|i| (a, id(i))).collect();
    let (lat, failed) = drive(requests, 32).await;
    let after = Snapshot::take(fleet).await?;
    let hits = after.delta(&before, 0, "l1_hits") + after.delta(&before, 0, "l2_hits");
    let lookups = hits + after.delta(&before, 0, "misses");
    push(Step {
        name: "A: hot traffic over 200 ids".into(),
        requests: n,
        failed,
        source_calls: after.calls(&before),
        detail: format!(
            "hit ratio {:.1} %, p50 {:.2} ms, p99 {:.2} ms",
            100.0 * hits as f64 / lookups.max(1) as f64,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        ),
    });

    // 3. The same ids on B, whose L1 has never seen them.
    let before = after;
    let requests = (0..200u64).chain(0..200).map(|id| (b, id)).collect();
    let (_, failed) = drive(requests, 32).await;
    let after = Snapshot::take(fleet).await?;
    let l2_hits = after.delta(&before, 1, "l2_hits");
    if shared && l2_hits == 0 {
        return Err("B found none of A's values in Redis".into());
    }
    push(Step {
        name: "B: the same 200 ids, twice".into(),
        requests: 400,
        failed,
        source_calls: after.calls(&before),
        detail: format!(
            "L2 hits {l2_hits}, then L1 hits {}: B's L1 was empty, Redis had A's values",
            after.delta(&before, 1, "l1_hits")
        ),
    });

    // 4. Ids that do not exist: the source is asked once per id.
    let before = after;
    let requests = (0..500)
        .map(|i| (alternate(fleet, i), 50_000 + i % 10))
        .collect();
    let (_, failed) = drive(requests, 32).await;
    let after = Snapshot::take(fleet).await?;
    push(Step {
        name: "500 requests for 10 unknown ids (404), both instances".into(),
        requests: 500,
        failed,
        source_calls: after.calls(&before),
        detail: "negative caching: the absence is cached like a value".into(),
    });

    // 5. A correction written on A, read on B (which holds id 7 in its L1).
    let corrected = 0.99;
    let status = post_json(a, "/predictions/7", &format!("{{\"score\":{corrected}}}")).await?;
    if status != 204 {
        return Err(format!("the correction was refused ({status})").into());
    }
    let written = Instant::now();
    let mut seen = None;
    while written.elapsed() < Duration::from_secs(5) {
        let page = http_get(b, "/predictions/7").await?;
        let score = serde_json::from_str::<Value>(&page.body)
            .ok()
            .and_then(|v| v.get("score").and_then(Value::as_f64));
        if score == Some(corrected) {
            seen = Some(written.elapsed());
            break;
        }
        if !shared {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let detail = match (seen, shared) {
        (Some(t), _) => format!(
            "B dropped its L1 copy on the bus message and read the new score after {:.1} ms",
            t.as_secs_f64() * 1e3
        ),
        (None, false) => "no Redis: B keeps its own copy until it expires".into(),
        (None, true) => return Err("B never saw the correction made on A".into()),
    };
    push(Step {
        name: "a correction written on A, read on B".into(),
        requests: 1,
        failed: 0,
        source_calls: 0,
        detail,
    });

    // 6. Redis killed under traffic on both instances, then restarted.
    if let Some(server) = redis {
        server.kill();
        let n = scale(4_000, 800);
        let before = Snapshot::take(fleet).await?;
        let requests = (0..n as u64)
            .map(|i| (alternate(fleet, i), (i * 13) % 400))
            .collect();
        let (lat, failed) = drive(requests, 32).await;
        let after = Snapshot::take(fleet).await?;
        let l1 = after.delta(&before, 0, "l1_hits") + after.delta(&before, 1, "l1_hits");
        push(Step {
            name: "Redis killed: ids 0–399 on both instances".into(),
            requests: n,
            failed,
            source_calls: after.calls(&before),
            detail: format!(
                "L1 answered {l1} (ids 0–199 were warm); ids 200–399 were never loaded: the \
                 source was asked once per id by each instance that wanted it (≤ 400), with no \
                 Redis to share the values; p99 {:.1} ms, health {}",
                pct(&lat, 0.99),
                health(a).await
            ),
        });
        server.restart()?;
        println!(
            "redis-server pid {} restarted, empty",
            server.pid().unwrap_or(0)
        );
        let back = Instant::now();
        let mut healthy = false;
        while back.elapsed() < Duration::from_secs(15) {
            let _ = drive(vec![(a, 1), (b, 1)], 2).await;
            if health(a).await == "healthy" && health(b).await == "healthy" {
                healthy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        push(Step {
            name: "Redis restarted (empty)".into(),
            requests: 0,
            failed: 0,
            source_calls: 0,
            detail: if healthy {
                format!(
                    "both instances healthy again after {:.1} s",
                    back.elapsed().as_secs_f64()
                )
            } else {
                "not healthy again after 15 s".into()
            },
        });
    }
    Ok(steps)
}
