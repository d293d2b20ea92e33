//! Connections: lazily opened, shared, re-opened after they break.
//!
//! A [`Slot`] holds one connection handle (a multiplexed standalone connection or a
//! cluster connection; both pipeline concurrent requests on their sockets). The first
//! caller that finds a slot empty starts one background connect task; everyone else
//! waits for that task, each bounded by their own operation timeout. The connect itself
//! is bounded by the connect timeout and is *not* cancelled when an impatient caller
//! gives up, so a connect that needs longer than one operation still completes. After a
//! failed connect the slot refuses immediately for `reconnect_backoff`, so an outage costs
//! callers nothing and Redis no connect storm.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::CacheError;
use parking_lot::RwLock;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use std::future::Future;

use redis::{Cmd, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::Notify;

pub(crate) const BACKEND: &str = "redis";

use crate::log::{log_error, log_info, log_warn};

/// One open connection: standalone (multiplexed) or cluster.
#[derive(Clone)]
pub(crate) enum Handle {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(c) => c.req_packed_command(cmd),
            Handle::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Handle::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(c) => c.get_db(),
            Handle::Cluster(c) => c.get_db(),
        }
    }
}

/// Where connections go.
#[derive(Clone)]
pub(crate) enum Target {
    Standalone {
        client: redis::Client,
        config: redis::AsyncConnectionConfig,
        /// The TLS server name mapped to the real host (the bus's connections
        /// need it too).
        pinned: Option<crate::security::PinnedHost>,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
        /// The seeds, credentials and TLS applied (the bus subscribes through
        /// one of them).
        seeds: Arc<[redis::ConnectionInfo]>,
    },
}

impl Target {
    async fn open(&self) -> RedisResult<Handle> {
        match self {
            Target::Standalone { client, config, .. } => client
                .get_multiplexed_async_connection_with_config(config)
                .await
                .map(Handle::Single),
            Target::Cluster { client, .. } => {
                client.get_async_connection().await.map(Handle::Cluster)
            }
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }
}

enum SlotState {
    Idle {
        /// When the last connect failed, and why.
        failed: Option<(Instant, ConnectError)>,
    },
    Connecting,
    Ready {
        handle: Handle,
        generation: u64,
    },
}

/// One connection and the state machine around it.
pub(crate) struct Slot {
    /// Read by every operation (shared), written only on connect and disconnect.
    state: RwLock<SlotState>,
    notify: Notify,
    /// Rung by a request that finds the slot connecting: the race starts a
    /// fresh attempt, since those already under way may have been sent into a
    /// network that has healed since.
    hurry: Arc<Notify>,
}

/// Counters about connections, shared with the store's stats.
#[derive(Default, Debug)]
pub(crate) struct ConnCounters {
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    /// A loss or failure was logged and no recovery since: log the next
    /// success, and no further failure until then.
    pub(crate) trouble_logged: std::sync::atomic::AtomicBool,
}

impl ConnCounters {
    /// Logs a failed connect: an error the very first time (the store never
    /// reached Redis), a warning on the first failure of an outage, nothing for
    /// the rest of it.
    fn connect_failed(&self, name: &str, why: &str) {
        let first_ever = self.connects.load(Ordering::Relaxed) == 0
            && self.connect_failures.load(Ordering::Relaxed) == 0;
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        if self.trouble_logged.swap(true, Ordering::Relaxed) {
            return;
        }
        if first_ever {
            log_error!(store = %name, error = %why, "cannot connect to Redis; the cache serves from L1 and the loader until it can");
        } else {
            log_warn!(store = %name, error = %why, "cannot connect to Redis; retrying");
        }
        let _ = (name, why, first_ever);
    }

    fn connected(&self, name: &str) {
        self.connects.fetch_add(1, Ordering::Relaxed);
        if self.trouble_logged.swap(false, Ordering::Relaxed) {
            log_info!(store = %name, "connected to Redis again");
        }
        let _ = name;
    }

    fn lost(&self, name: &str) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        if !self.trouble_logged.swap(true, Ordering::Relaxed) {
            log_warn!(store = %name, "connection to Redis lost; reconnecting");
        }
        let _ = name;
    }
}

/// The connection pool (one slot by default) and its settings.
pub(crate) struct Connections {
    pub(crate) target: Target,
    slots: Box<[Arc<Slot>]>,
    next: AtomicUsize,
    generation: AtomicU64,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_backoff: Duration,
    pub(crate) counters: Arc<ConnCounters>,
    /// The store's name, for log events.
    name: Arc<str>,
}

impl Connections {
    pub(crate) fn new(
        name: Arc<str>,
        target: Target,
        pool_size: usize,
        connect_timeout: Duration,
        reconnect_backoff: Duration,
    ) -> Self {
        let slots = (0..pool_size.max(1))
            .map(|_| {
                Arc::new(Slot {
                    state: RwLock::new(SlotState::Idle { failed: None }),
                    notify: Notify::new(),
                    hurry: Arc::new(Notify::new()),
                })
            })
            .collect();
        Connections {
            target,
            slots,
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            connect_timeout,
            reconnect_backoff,
            counters: Arc::new(ConnCounters::default()),
            name,
        }
    }

    /// Number of connection slots.
    pub(crate) fn pool_size(&self) -> usize {
        self.slots.len()
    }

    /// Slots that currently hold an open connection.
    pub(crate) fn connected(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(*s.state.read(), SlotState::Ready { .. }))
            .count()
    }

    fn pick(&self) -> usize {
        if self.slots.len() == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()
        }
    }

    /// A handle to the next slot's connection if it is open (the usual case): no
    /// waiting, no timer. Otherwise the slot's index, to wait on with
    /// `handle_at`.
    pub(crate) fn ready(&self) -> Result<Lease, usize> {
        let index = self.pick();
        match &*self.slots[index].state.read() {
            SlotState::Ready { handle, generation } => Ok(Lease {
                handle: handle.clone(),
                ticket: Ticket {
                    slot: index,
                    generation: *generation,
                },
            }),
            _ => Err(index),
        }
    }

    /// A handle to slot `index`'s connection, opening one if needed. Not bounded in
    /// time by itself: callers wrap it in their operation timeout.
    pub(crate) async fn handle_at(&self, index: usize) -> Result<Lease, CacheError> {
        let slot = &self.slots[index];
        loop {
            let notified = slot.notify.notified();
            tokio::pin!(notified);
            {
                let mut state = slot.state.write();
                match &*state {
                    SlotState::Ready { handle, generation } => {
                        return Ok(Lease {
                            handle: handle.clone(),
                            ticket: Ticket {
                                slot: index,
                                generation: *generation,
                            },
                        });
                    }
                    SlotState::Idle {
                        failed: Some((at, failure)),
                    } if at.elapsed() < self.reconnect_backoff => {
                        let why = &failure.why;
                        return Err(if failure.denied {
                            CacheError::Denied {
                                backend: BACKEND,
                                message: why.clone(),
                            }
                        } else {
                            CacheError::Unavailable {
                                backend: BACKEND,
                                message: format!(
                                    "not connected (last connect attempt failed: {why})"
                                ),
                                source: None,
                            }
                        });
                    }
                    SlotState::Idle { .. } => {
                        *state = SlotState::Connecting;
                        self.spawn_connect(slot.clone());
                    }
                    SlotState::Connecting => slot.hurry.notify_one(),
                }
                // Register for the wake-up before the lock is released.
                notified.as_mut().enable();
            }
            notified.await;
        }
    }

    fn spawn_connect(&self, slot: Arc<Slot>) {
        let target = self.target.clone();
        let timeout = self.connect_timeout;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let counters = self.counters.clone();
        let name = self.name.clone();
        let hurry = slot.hurry.clone();
        tokio::spawn(async move {
            let outcome = race_connect(timeout, Some(&hurry), move || {
                let target = target.clone();
                async move { target.open().await }
            })
            .await;
            let mut state = slot.state.write();
            *state = match outcome {
                Ok(handle) => {
                    counters.connected(&name);
                    SlotState::Ready { handle, generation }
                }
                Err(failure) => {
                    counters.connect_failed(&name, &failure.why);
                    SlotState::Idle {
                        failed: Some((Instant::now(), failure)),
                    }
                }
            };
            drop(state);
            slot.notify.notify_waiters();
        });
    }

    /// Drops the connection a failed request used, if it is still the current one,
    /// so the next request opens a fresh one.
    pub(crate) fn discard(&self, ticket: &Ticket) {
        let slot = &self.slots[ticket.slot];
        let mut state = slot.state.write();
        if let SlotState::Ready { generation, .. } = &*state
            && *generation == ticket.generation
        {
            *state = SlotState::Idle { failed: None };
            self.counters.lost(&self.name);
        }
    }
}

/// Why a connect failed, and whether the server refused the credentials.
#[derive(Debug, Clone)]
pub(crate) struct ConnectError {
    pub(crate) why: String,
    pub(crate) denied: bool,
}

/// The server's error code, also for an error inside a pipeline (the first
/// failing command's).
fn server_code(e: &RedisError) -> Option<String> {
    e.code().map(str::to_owned).or_else(|| {
        e.clone()
            .into_server_errors()
            .and_then(|items| items.first().map(|(_, err)| err.code().to_owned()))
    })
}

/// Whether the server refused the credentials or a permission (ACL).
pub(crate) fn is_denial(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(
            server_code(e).as_deref(),
            Some("NOAUTH" | "WRONGPASS" | "NOPERM")
        )
}

/// Attempts in flight at most while connecting.
const MAX_RACERS: usize = 4;
/// Attempts in flight at most counting those a waiting request asked for.
const MAX_HURRIED: usize = 8;
/// The least time between two attempts a waiting request asks for.
const HURRY_GAP: Duration = Duration::from_millis(25);
/// How long one race lasts at most, in connect timeouts.
const RACE_SPAN: u32 = 2;

/// Opens a connection with `open`, each attempt bounded by `timeout`. While an
/// attempt hangs (a black-holed network answers nothing, so only the timeout ends
/// it), another starts every `timeout / 4` (25..250 ms), up to four at once; the
/// first to succeed wins and the rest are dropped. So when the network heals, a
/// connection is made within a fraction of the connect timeout instead of after
/// the attempt in progress gives up. An attempt that fails outright (refused)
/// starts no other: that is an answer, not a hang, and the race ends once
/// nothing else is in flight.
///
/// A request waiting for the connection may ring `hurry`: once the race is half
/// a stagger old (a connect that has not answered by then is presumed hung;
/// one that is merely slow is not multiplied by the requests waiting for it),
/// the race starts a fresh attempt at once (at most one per 25 ms, eight in
/// flight in all), so
/// the first request after a heal is answered within a round trip rather than
/// after the next scheduled attempt, which could be later than the request's
/// own timeout (the breaker's probe would fail and keep L2 off for another
/// open period).
///
/// The race itself lasts at most two connect timeouts: then it gives up at once,
/// dropping what still hangs, and the caller backs off and starts another. It
/// used to stop *launching* after eight attempts and then wait for those in
/// flight to time out, so a network that healed just after the eighth launch
/// was noticed only a full timeout (plus the caller's backoff) later: the chaos
/// run's black hole once served stale reads past its one-second grace that way.
pub(crate) async fn race_connect<T, F, Fut>(
    timeout: Duration,
    hurry: Option<&Notify>,
    open: F,
) -> Result<T, ConnectError>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = RedisResult<T>> + Send + 'static,
{
    let stagger = (timeout / 4).clamp(Duration::from_millis(25), Duration::from_millis(250));
    let mut racers = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    let deadline = start + timeout * RACE_SPAN;
    let mut next = start;
    let mut launched = false;
    let mut last_launch = start;
    let mut hurried = false;
    let mut last = ConnectError {
        why: String::from("no connect attempt made"),
        denied: false,
    };
    loop {
        let now = tokio::time::Instant::now();
        if launched && now >= deadline {
            return Err(ConnectError {
                why: format!("no connection within {:?}", timeout * RACE_SPAN),
                denied: last.denied,
            });
        }
        // More attempts only while one hangs: a failure is an answer.
        let scheduled = now >= next && racers.len() < MAX_RACERS;
        let asked = hurried
            && now >= start + stagger / 2
            && now >= last_launch + HURRY_GAP
            && racers.len() < MAX_HURRIED;
        if !launched || (!racers.is_empty() && (scheduled || asked)) {
            let attempt = open();
            racers.spawn(async move { tokio::time::timeout(timeout, attempt).await });
            launched = true;
            last_launch = now;
            next = now + stagger;
            hurried = false;
        }
        if racers.is_empty() {
            return Err(last);
        }
        // With every racer in flight, only a finished one or the deadline can
        // change anything.
        let mut wake = if racers.len() < MAX_RACERS {
            next.min(deadline)
        } else {
            deadline
        };
        if hurried && racers.len() < MAX_HURRIED {
            wake = wake.min((last_launch + HURRY_GAP).max(start + stagger / 2));
        }
        tokio::select! {
            joined = racers.join_next() => match joined {
                Some(Ok(Ok(Ok(conn)))) => return Ok(conn),
                Some(Ok(Ok(Err(e)))) => {
                    // Refused or rejected: no new attempt (the loop launches
                    // only while one hangs), but one still in flight may win.
                    last = ConnectError {
                        why: e.to_string(),
                        denied: is_denial(&e),
                    };
                }
                Some(Ok(Err(_))) => {
                    last = ConnectError {
                        why: format!("connect timed out after {timeout:?}"),
                        denied: false,
                    };
                }
                Some(Err(_)) | None => {}
            },
            () = tokio::time::sleep_until(wake) => {}
            () = async {
                match hurry {
                    Some(h) => h.notified().await,
                    None => std::future::pending().await,
                }
            }, if !hurried => hurried = true,
        }
    }
}

/// A connection handle borrowed from a slot.
pub(crate) struct Lease {
    pub(crate) handle: Handle,
    pub(crate) ticket: Ticket,
}

/// Which connection a handle came from, to drop it if it turns out broken.
pub(crate) struct Ticket {
    slot: usize,
    generation: u64,
}

/// Whether an error means the connection itself is broken (as opposed to a command
/// error on a healthy connection).
pub(crate) fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// Maps a client error to the store's error type.
///
/// A reply that proves the server is alive is no outage: a refused credential
/// or permission is [`CacheError::Denied`]; `OOM`, `WRONGTYPE`, `NOSCRIPT`,
/// `READONLY` and other command errors are [`CacheError::Refused`]. Only a node
/// that cannot serve right now (`TRYAGAIN`, `CLUSTERDOWN`, `LOADING`,
/// `MASTERDOWN`, a redirection the client could not follow) and transport
/// failures are [`CacheError::Unavailable`].
pub(crate) fn map_error(op: &'static str, after: Duration, e: RedisError) -> CacheError {
    if e.is_timeout() {
        return CacheError::Timeout { op, after };
    }
    if is_denial(&e) {
        return CacheError::Denied {
            backend: BACKEND,
            message: e.to_string(),
        };
    }
    match server_code(&e).as_deref() {
        None
        | Some("TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" | "MOVED" | "ASK" | "BUSY") => {
            CacheError::unavailable(BACKEND, format!("{op} failed: {e}"), e)
        }
        Some(code) => CacheError::Refused {
            backend: BACKEND,
            op,
            code: code.to_owned(),
            message: e.to_string(),
        },
    }
}

#[cfg(test)]
mod race_tests {
    //! The connect race on a paused clock: attempts are futures that hang (a
    //! black hole), fail at once (refused) or succeed, by the time they start.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use redis::{ErrorKind, RedisError, RedisResult};
    use tokio::sync::Notify;
    use tokio::time::Instant;

    use super::{HURRY_GAP, MAX_HURRIED, MAX_RACERS, race_connect};

    const TIMEOUT: Duration = Duration::from_secs(1);
    /// What the bus reader sleeps at most between two races.
    const BACKOFF: Duration = crate::bus::MAX_BACKOFF;

    /// Attempts made and the most in flight at once.
    #[derive(Default)]
    struct Tally {
        started: AtomicUsize,
        live: AtomicUsize,
        most_live: AtomicUsize,
    }

    /// Counts an attempt as live until dropped (finished, timed out or aborted).
    struct Live(Arc<Tally>);

    impl Live {
        fn new(tally: &Arc<Tally>) -> Self {
            tally.started.fetch_add(1, Ordering::SeqCst);
            let now = tally.live.fetch_add(1, Ordering::SeqCst) + 1;
            tally.most_live.fetch_max(now, Ordering::SeqCst);
            Self(tally.clone())
        }
    }

    impl Drop for Live {
        fn drop(&mut self) {
            self.0.live.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Attempts started before `heal` hang forever; later ones connect at once.
    async fn black_hole_until(
        heal: Instant,
        tally: Arc<Tally>,
    ) -> Result<Instant, super::ConnectError> {
        black_hole_hurried(heal, tally, None).await
    }

    /// The same, with a request able to ring `hurry`.
    async fn black_hole_hurried(
        heal: Instant,
        tally: Arc<Tally>,
        hurry: Option<&Notify>,
    ) -> Result<Instant, super::ConnectError> {
        race_connect(TIMEOUT, hurry, move || {
            let live = Live::new(&tally);
            async move {
                let _live = live;
                if Instant::now() < heal {
                    std::future::pending::<()>().await;
                }
                RedisResult::Ok(Instant::now())
            }
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_network_that_heals_mid_race_is_used_within_one_stagger() {
        let tally = Arc::new(Tally::default());
        let start = Instant::now();
        let heal = start + Duration::from_millis(600);
        let Ok(at) = black_hole_until(heal, tally.clone()).await else {
            panic!("the race gave up although the network healed inside it");
        };
        assert!(at >= heal);
        assert!(
            at - heal <= TIMEOUT / 4,
            "connected {:?} after the heal",
            at - heal
        );
        assert!(tally.most_live.load(Ordering::SeqCst) <= MAX_RACERS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_race_against_a_black_hole_ends_after_two_timeouts_with_bounded_attempts() {
        let tally = Arc::new(Tally::default());
        let start = Instant::now();
        let never = start + Duration::from_secs(3600);
        let outcome = black_hole_until(never, tally.clone()).await;
        let took = Instant::now() - start;
        let Err(e) = outcome else {
            panic!("connected through a black hole");
        };
        assert!(!e.denied);
        assert!(e.why.contains("no connection within"), "{}", e.why);
        assert_eq!(took, TIMEOUT * 2, "the race lasted {took:?}");
        let started = tally.started.load(Ordering::SeqCst);
        assert!((4..=12).contains(&started), "{started} attempts");
        assert!(tally.most_live.load(Ordering::SeqCst) <= MAX_RACERS);
        // The attempts still hanging at the end were dropped with the race.
        tokio::task::yield_now().await;
        assert_eq!(tally.live.load(Ordering::SeqCst), 0);
    }

    /// The case the chaos run caught: the network heals late in a race, after
    /// the attempts in flight were all sent into the black hole. The caller's
    /// next race (after its backoff) must find it within one second of the heal,
    /// wherever in the race the heal falls.
    #[tokio::test(start_paused = true)]
    async fn a_late_heal_is_noticed_by_the_next_race_within_a_second() {
        for late_ms in (0..2_000).step_by(50) {
            let tally = Arc::new(Tally::default());
            let start = Instant::now();
            let heal = start + Duration::from_millis(late_ms);
            let connected = loop {
                match black_hole_until(heal, tally.clone()).await {
                    Ok(at) => break at,
                    Err(_) => tokio::time::sleep(BACKOFF).await,
                }
                assert!(Instant::now() - start < Duration::from_secs(10));
            };
            let after = connected - heal;
            assert!(
                after <= TIMEOUT / 2,
                "healed {late_ms} ms into the race, connected {after:?} later"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_an_answer_not_a_hang() {
        let tally = Arc::new(Tally::default());
        let start = Instant::now();
        let counted = tally.clone();
        let outcome: Result<(), _> = race_connect(TIMEOUT, None, move || {
            let live = Live::new(&counted);
            async move {
                let _live = live;
                Err(RedisError::from((
                    ErrorKind::AuthenticationFailed,
                    "WRONGPASS",
                    String::from("invalid username-password pair"),
                )))
            }
        })
        .await;
        let Err(e) = outcome else {
            panic!("a refused attempt connected");
        };
        assert!(e.denied, "{}", e.why);
        assert_eq!(Instant::now(), start, "a refusal waited");
        assert_eq!(tally.started.load(Ordering::SeqCst), 1);
    }

    /// A refusal while an earlier attempt still hangs does not end the race:
    /// the hanging one may still connect.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_does_not_drop_an_attempt_still_in_flight() {
        let made = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let outcome = race_connect(TIMEOUT, None, move || {
            let n = made.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok(n)
                } else {
                    Err(RedisError::from((ErrorKind::Io, "refused")))
                }
            }
        })
        .await;
        assert_eq!(outcome.ok(), Some(0));
        assert_eq!(Instant::now() - start, Duration::from_millis(400));
    }

    /// A request waiting after the heal rings `hurry`: it need not wait for the
    /// next scheduled attempt (up to a stagger away, longer than a probe's
    /// operation timeout).
    #[tokio::test(start_paused = true)]
    async fn a_waiting_request_gets_a_fresh_attempt_at_once() {
        for heal_ms in [300u64, 1_100, 1_880, 1_990] {
            let tally = Arc::new(Tally::default());
            let hurry = Arc::new(Notify::new());
            let start = Instant::now();
            let heal = start + Duration::from_millis(heal_ms);
            let ring = hurry.clone();
            let request = tokio::spawn(async move {
                tokio::time::sleep_until(heal + Duration::from_millis(1)).await;
                ring.notify_one();
            });
            let Ok(at) = black_hole_hurried(heal, tally, Some(&hurry)).await else {
                panic!("healed {heal_ms} ms in and a request waited: still no connection");
            };
            assert!(
                at - heal <= Duration::from_millis(1),
                "healed {heal_ms} ms in, connected {:?} later",
                at - heal
            );
            request.await.expect("the ringing task");
        }
    }

    /// However often requests ring, attempts stay spaced and bounded.
    #[tokio::test(start_paused = true)]
    async fn hurried_attempts_are_spaced_and_bounded() {
        let tally = Arc::new(Tally::default());
        let hurry = Arc::new(Notify::new());
        let ring = hurry.clone();
        let requests = tokio::spawn(async move {
            for _ in 0..3_000 {
                ring.notify_one();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let start = Instant::now();
        let never = start + Duration::from_secs(3600);
        let outcome = black_hole_hurried(never, tally.clone(), Some(&hurry)).await;
        assert!(outcome.is_err());
        assert_eq!(Instant::now() - start, TIMEOUT * 2);
        let started = tally.started.load(Ordering::SeqCst);
        let spaced = (TIMEOUT * 2).as_millis() / HURRY_GAP.as_millis() + 1;
        assert!(
            started >= MAX_HURRIED && started as u128 <= spaced,
            "{started} attempts"
        );
        assert!(tally.most_live.load(Ordering::SeqCst) <= MAX_HURRIED);
        requests.abort();
    }

    /// A connect that is slow but answers (a distant server) is not multiplied
    /// by the requests waiting for it.
    #[tokio::test(start_paused = true)]
    async fn a_slow_connect_is_not_multiplied_by_waiting_requests() {
        let tally = Arc::new(Tally::default());
        let hurry = Arc::new(Notify::new());
        let ring = hurry.clone();
        let requests = tokio::spawn(async move {
            loop {
                ring.notify_one();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let counted = tally.clone();
        let start = Instant::now();
        let outcome = race_connect(TIMEOUT, Some(&hurry), move || {
            let live = Live::new(&counted);
            async move {
                let _live = live;
                tokio::time::sleep(Duration::from_millis(100)).await;
                RedisResult::Ok(())
            }
        })
        .await;
        requests.abort();
        assert!(outcome.is_ok());
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
        assert_eq!(tally.started.load(Ordering::SeqCst), 1);
    }
}
