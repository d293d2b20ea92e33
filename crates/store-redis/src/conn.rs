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

use redis::{Cmd, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::Notify;

pub(crate) const BACKEND: &str = "redis";

use crate::log::{log_error, log_info, log_warn};
use crate::race::race_connect;

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
