//! The invalidation bus: messages that tell other instances to drop their
//! in-process (L1) copies, kept in a Redis Stream so a subscriber that was away
//! can read what it missed.
//!
//! Every store namespace has one stream, `{prefix}:{namespace}#bus`. Publishing is
//! one `XADD … MAXLEN ~ history`; a message names its origin (a random id per
//! [`InvalidationBus`]), so a subscriber skips its own.
//!
//! A [`Subscription`] reads the stream on a dedicated connection with
//! `XREAD BLOCK keepalive`, from the id of the last message it read. That one
//! blocking read is the whole protocol:
//!
//! - **Keep-alive.** An idle read returns empty after `keepalive`; a reply that
//!   does not come within `keepalive` plus the connect timeout means the
//!   connection is dead, and only then does the subscription reconnect. (The
//!   pub/sub bus this replaces pinged a subscribed connection and misread its
//!   `["pong", ""]` reply as a failure: it reconnected every second.)
//! - **Replay.** After a reconnect the next read starts after the last id seen,
//!   so messages published meanwhile (a partition, a pause, a slow consumer) are
//!   delivered late instead of lost, and no gap is declared.
//! - **Gaps only when history is really gone.** [`BusEvent::Gap`] is reported
//!   only when messages may have been lost for good: the server answering is not
//!   the one that answered before (its `run_id` changed: a restart, which may
//!   have come back empty, or a failover, which may have lost unreplicated
//!   writes), or the history was trimmed past the last id read
//!   ([`GapReason::HistoryTrimmed`]). What to do about a gap is the receiver's
//!   policy.
//!
//! In a cluster the stream lives on the master of its slot: the subscription
//! starts from a seed node and follows `MOVED` to the owner, and after a failover
//! it finds the new master the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::{CacheError, Codec};
use redis::{ConnectionAddr, ConnectionInfo, RedisError, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::conn::Target;
use crate::log::{log_info, log_warn};
use crate::store::RedisStore;

/// Wire format version of bus messages.
const WIRE_VERSION: u8 = 1;
/// The stream field that holds a message.
const FIELD: &str = "m";
/// Default for [`InvalidationBus::keepalive`].
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(1);
/// Default for [`InvalidationBus::history`].
pub const DEFAULT_HISTORY: u64 = 10_000;
/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// First wait between reconnect attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(25);
/// Events buffered per subscription (the reader waits when it is full).
const BUFFER: usize = 1024;
/// Messages read per `XREAD`.
const READ_COUNT: usize = 256;
/// A subscription that could not reach Redis when it started reads from this long
/// before it started, so messages published while it was connecting are not missed.
const START_MARGIN_MS: u64 = 2_000;

/// What to invalidate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Action {
    /// These keys (their [`CacheKey`](cache_core::CacheKey) encodings, without the
    /// `{prefix}:{namespace}:` head).
    Keys(Vec<String>),
    /// Every entry carrying this tag.
    Tag(String),
    /// Every key whose encoding starts with this prefix.
    Prefix(String),
    /// Everything in the namespace.
    Clear,
}

/// One message on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    /// The [`InvalidationBus::origin`] of the sender.
    pub origin: u64,
    /// What to drop.
    pub action: Action,
}

/// Why a subscription may have lost messages for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapReason {
    /// The server holding the bus is not the one that held it before (it
    /// restarted, perhaps empty, or a replica took over): messages written to the
    /// old one after the last one read may be gone.
    ServerChanged,
    /// Messages after the last one read were trimmed from the history (the
    /// subscription was away or behind for longer than the history holds).
    HistoryTrimmed,
}

impl GapReason {
    /// A short label (`server_changed`, `history_trimmed`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::ServerChanged => "server_changed",
            GapReason::HistoryTrimmed => "history_trimmed",
        }
    }
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// An invalidation published by another instance.
    Message(Invalidation),
    /// Messages may have been lost; the receiver applies its gap policy.
    Gap(GapReason),
}

/// Publishes to and subscribes to one namespace's invalidation stream.
#[derive(Debug, Clone)]
pub struct InvalidationBus<C = cache_core::Postcard> {
    store: RedisStore<C>,
    key: Arc<str>,
    origin: u64,
    keepalive: Duration,
    history: u64,
}

impl<C: Codec + Clone> RedisStore<C> {
    /// The invalidation bus of this store's namespace, with a fresh origin id.
    #[must_use]
    pub fn bus(&self) -> InvalidationBus<C> {
        let space = self.key_space();
        InvalidationBus {
            store: self.clone(),
            key: format!("{}:{}#bus", space.prefix(), space.namespace()).into(),
            origin: random_origin(),
            keepalive: DEFAULT_KEEPALIVE,
            history: DEFAULT_HISTORY,
        }
    }
}

fn random_origin() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl<C: Codec> InvalidationBus<C> {
    /// How long an idle subscription's blocking read waits before it returns
    /// empty and reads again (default 1 s). A reply that does not come within
    /// this plus the connect timeout means the connection is dead. Clamped to
    /// at least 10 ms.
    #[must_use]
    pub fn keepalive(mut self, keepalive: Duration) -> Self {
        self.keepalive = keepalive.max(Duration::from_millis(10));
        self
    }

    /// About how many messages the stream keeps for subscribers that were away
    /// (default 10,000; `XADD MAXLEN ~`). A subscription away for longer than
    /// this many messages reports [`GapReason::HistoryTrimmed`]. At least 1.
    #[must_use]
    pub fn history(mut self, messages: u64) -> Self {
        self.history = messages.max(1);
        self
    }

    /// This instance's origin id (messages it publishes carry it; its own
    /// subscriptions skip them).
    #[must_use]
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// The Redis key of the stream.
    #[must_use]
    pub fn stream_key(&self) -> &str {
        &self.key
    }

    /// Appends `action` to the stream; returns the message's stream id.
    pub async fn publish(&self, action: Action) -> Result<String, CacheError> {
        let message = Invalidation {
            origin: self.origin,
            action,
        };
        let mut payload = vec![WIRE_VERSION];
        payload = postcard::to_extend(&message, payload)
            .map_err(|e| CacheError::Encode(e.to_string()))?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&*self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.history)
            .arg("*")
            .arg(FIELD)
            .arg(payload);
        self.store.query("publish", &cmd).await
    }

    /// Starts reading the stream on a dedicated connection, kept alive (and
    /// reconnected) by a background task until the [`Subscription`] is dropped.
    /// Waits for the first connect attempt; if Redis is unreachable the
    /// subscription still returns and keeps trying, and once it gets through it
    /// reads from a little before it started, so nothing published meanwhile is
    /// missed.
    pub async fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::channel(BUFFER);
        let shared = Arc::new(Shared::default());
        let (first_tx, first_rx) = oneshot::channel();
        let inner = self.store.inner();
        let reader = Reader {
            seeds: seeds(&inner.conns.target),
            connect_timeout: inner.conns.connect_timeout,
            keepalive: self.keepalive,
            key: self.key.clone(),
            origin: self.origin,
            shared: shared.clone(),
            tx,
        };
        let task = tokio::spawn(reader.run(first_tx));
        let _ = first_rx.await;
        Subscription { rx, shared, task }
    }
}

/// What a subscription's task shares with its handle.
#[derive(Debug, Default)]
struct Shared {
    connected: AtomicBool,
    connects: AtomicU64,
    messages: AtomicU64,
    replayed: AtomicU64,
    gaps: AtomicU64,
}

/// Counters of one [`Subscription`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Connections opened (the first one included): `connects - 1` reconnects.
    pub connects: u64,
    /// Messages from other instances delivered.
    pub messages: u64,
    /// Of those, messages published while this subscription was disconnected
    /// and read after it reconnected.
    pub replayed: u64,
    /// Gaps reported.
    pub gaps: u64,
}

/// A live subscription; see [`InvalidationBus::subscribe`].
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<BusEvent>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// The next event; `None` only if the background task ended.
    pub async fn recv(&mut self) -> Option<BusEvent> {
        self.rx.recv().await
    }

    /// An event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<BusEvent> {
        self.rx.try_recv().ok()
    }

    /// Whether the subscription is currently connected (messages published now
    /// will arrive at once).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.status().is_connected()
    }

    /// A cheap handle on this subscription's state and counters, usable after
    /// the subscription has moved into another task.
    #[must_use]
    pub fn status(&self) -> BusStatus {
        BusStatus(self.shared.clone())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A [`Subscription`]'s connection state and counters; see
/// [`Subscription::status`].
#[derive(Debug, Clone)]
pub struct BusStatus(Arc<Shared>);

impl BusStatus {
    /// `true` while connected.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.0.connected.load(Ordering::Acquire)
    }

    /// Counters since the subscription started.
    #[must_use]
    pub fn stats(&self) -> BusStats {
        let s = &self.0;
        BusStats {
            connects: s.connects.load(Ordering::Relaxed),
            messages: s.messages.load(Ordering::Relaxed),
            replayed: s.replayed.load(Ordering::Relaxed),
            gaps: s.gaps.load(Ordering::Relaxed),
        }
    }
}

fn decode_message(bytes: &[u8]) -> Option<Invalidation> {
    let (&version, rest) = bytes.split_first()?;
    if version != WIRE_VERSION {
        return None;
    }
    let (message, tail) = postcard::take_from_bytes::<Invalidation>(rest).ok()?;
    tail.is_empty().then_some(message)
}

/// Where a subscription starts looking: the server, or each cluster seed.
fn seeds(target: &Target) -> Vec<ConnectionInfo> {
    match target {
        Target::Standalone { client, .. } => vec![client.get_connection_info().clone()],
        Target::Cluster { urls, .. } => urls
            .iter()
            .filter_map(|u| redis::Client::open(u.as_str()).ok())
            .map(|c| c.get_connection_info().clone())
            .collect(),
    }
}

/// `info` pointed at another node (credentials and TLS settings kept).
fn with_addr(info: &ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
    let addr = match info.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    };
    info.clone().set_addr(addr)
}

/// A stream entry id, compared as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StreamId(u64, u64);

impl StreamId {
    const ZERO: StreamId = StreamId(0, 0);

    fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The items of an array, or the keys and values of a map in turn.
fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// `(id, payload)` pairs of an `XREAD` reply for one stream.
fn read_entries(reply: Value) -> Vec<(StreamId, Vec<u8>)> {
    let mut out = Vec::new();
    // RESP2: [[key, entries], ...]; RESP3: {key: entries, ...}.
    let per_stream: Vec<Value> = match reply {
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| items(s).into_iter().nth(1))
            .collect(),
        _ => Vec::new(),
    };
    for entries in per_stream {
        for entry in items(entries) {
            let mut parts = items(entry).into_iter();
            let Some(id) = parts.next().as_ref().and_then(text) else {
                continue;
            };
            let Some(id) = StreamId::parse(&id) else {
                continue;
            };
            let fields = parts.next().map(items).unwrap_or_default();
            let payload = fields
                .chunks(2)
                .find(|kv| kv.first().and_then(text).as_deref() == Some(FIELD))
                .and_then(|kv| match kv.get(1) {
                    Some(Value::BulkString(b)) => Some(b.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            out.push((id, payload));
        }
    }
    out
}

/// A field of `INFO` output.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == name).then(|| v.trim().to_owned())
    })
}

/// How one connection's session ended.
enum End {
    /// The receiver is gone: stop.
    Closed,
    /// The stream lives on another node.
    Moved(String, u16),
    /// Connecting or reading failed; try again after a pause.
    Failed,
}

/// Where a subscription is in the stream.
struct Position {
    /// Read after this id.
    after: StreamId,
    /// `true` once positioned (on the first connection, or by time).
    set: bool,
    /// The `run_id` of the server that answered last.
    run_id: Option<String>,
    /// Whether a connection was lost since the subscription started.
    lost: bool,
    /// When the current connection was made after a loss: messages older than
    /// this were published while the subscription was away (replays).
    back_at_ms: Option<u64>,
}

/// The subscription's background task.
struct Reader {
    seeds: Vec<ConnectionInfo>,
    connect_timeout: Duration,
    keepalive: Duration,
    key: Arc<str>,
    origin: u64,
    shared: Arc<Shared>,
    tx: mpsc::Sender<BusEvent>,
}

impl Reader {
    async fn run(self, first: oneshot::Sender<()>) {
        let mut first = Some(first);
        let started_ms = now_ms();
        let mut pos = Position {
            after: StreamId::ZERO,
            set: false,
            run_id: None,
            lost: false,
            back_at_ms: None,
        };
        let mut backoff = MIN_BACKOFF;
        let mut attempt = 0usize;
        let mut redirect: Option<ConnectionInfo> = None;
        loop {
            let info = match redirect.take() {
                Some(info) => info,
                None if self.seeds.is_empty() => return,
                None => {
                    attempt += 1;
                    self.seeds[(attempt - 1) % self.seeds.len()].clone()
                }
            };
            let end = self.session(&info, &mut pos, &mut first).await;
            if self.shared.connected.swap(false, Ordering::AcqRel) {
                pos.lost = true;
                if !matches!(end, End::Closed) {
                    log_warn!(stream = %self.key, "invalidation bus disconnected; reconnecting (missed messages will be replayed)");
                }
            }
            match end {
                End::Closed => return,
                End::Moved(host, port) => {
                    redirect = Some(with_addr(&info, &host, port));
                    continue;
                }
                End::Failed => {}
            }
            if let Some(f) = first.take() {
                let _ = f.send(());
            }
            if !pos.set {
                // Never reached Redis: start a little before subscribe() was called.
                pos.after = StreamId(started_ms.saturating_sub(START_MARGIN_MS), 0);
                pos.set = true;
            }
            if self.tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            if self.shared.connects.load(Ordering::Relaxed) > 0 {
                backoff = backoff.max(MIN_BACKOFF);
            }
        }
    }

    /// One connection: connect, position, then read until something fails.
    async fn session(
        &self,
        info: &ConnectionInfo,
        pos: &mut Position,
        first: &mut Option<oneshot::Sender<()>>,
    ) -> End {
        let Ok(client) = redis::Client::open(info.clone()) else {
            return End::Failed;
        };
        let reply_within = self.keepalive + self.connect_timeout;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(reply_within));
        let connecting = crate::conn::race_connect(self.connect_timeout, move || {
            let (client, config) = (client.clone(), config.clone());
            async move {
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            }
        });
        let Ok(mut conn) = connecting.await else {
            return End::Failed;
        };
        let bounded = self.connect_timeout;
        // A keyed command first, so a cluster node that does not own the stream
        // redirects us before we trust its run_id.
        let mut exists = redis::cmd("EXISTS");
        exists.arg(&*self.key);
        let exists: i64 = match tokio::time::timeout(bounded, exists.query_async(&mut conn)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return moved_or_failed(&e),
            Err(_) => return End::Failed,
        };
        let info_cmd = {
            let mut c = redis::cmd("INFO");
            c.arg("server");
            c
        };
        let Ok(Ok(server)) =
            tokio::time::timeout(bounded, info_cmd.query_async::<String>(&mut conn)).await
        else {
            return End::Failed;
        };
        let run_id = info_field(&server, "run_id");
        let mut gap = None;
        if !pos.set {
            // First contact: start at the stream's end.
            if first.is_some() {
                let mut tail = redis::cmd("XREVRANGE");
                tail.arg(&*self.key).arg("+").arg("-").arg("COUNT").arg(1);
                let Ok(Ok(reply)) =
                    tokio::time::timeout(bounded, tail.query_async::<Value>(&mut conn)).await
                else {
                    return End::Failed;
                };
                pos.after = items(reply)
                    .into_iter()
                    .next()
                    .and_then(|e| items(e).first().and_then(text))
                    .and_then(|id| StreamId::parse(&id))
                    .unwrap_or(StreamId::ZERO);
            }
            pos.set = true;
        } else if pos.run_id.is_some() && run_id.is_some() && pos.run_id != run_id {
            gap = Some(GapReason::ServerChanged);
        } else if exists > 0 {
            match self.trimmed_past(&mut conn, pos.after).await {
                Some(true) => gap = Some(GapReason::HistoryTrimmed),
                Some(false) => {}
                None => return End::Failed,
            }
        }
        pos.run_id = run_id;
        pos.back_at_ms = pos.lost.then(now_ms);
        if pos.lost {
            log_info!(stream = %self.key, "invalidation bus reconnected");
        }
        self.shared.connects.fetch_add(1, Ordering::Relaxed);
        self.shared.connected.store(true, Ordering::Release);
        if let Some(f) = first.take() {
            let _ = f.send(());
        }
        if let Some(reason) = gap {
            log_warn!(stream = %self.key, reason = reason.as_str(), "invalidation bus gap: messages may have been lost for good");
            self.shared.gaps.fetch_add(1, Ordering::Relaxed);
            if self.tx.send(BusEvent::Gap(reason)).await.is_err() {
                return End::Closed;
            }
        }
        self.read_loop(&mut conn, pos).await
    }

    /// Whether messages after `after` were trimmed away: the oldest message kept
    /// is newer than `after` and the stream has been trimmed at all. `None` when
    /// the question could not be asked.
    async fn trimmed_past(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        after: StreamId,
    ) -> Option<bool> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("STREAM").arg(&*self.key);
        let reply: Value = tokio::time::timeout(self.connect_timeout, cmd.query_async(conn))
            .await
            .ok()?
            .ok()?;
        let fields = items(reply);
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv.first().and_then(text).as_deref() == Some(name))
                .and_then(|kv| kv.get(1).and_then(text))
        };
        let length: u64 = field("length")?.parse().ok()?;
        let added: u64 = field("entries-added")
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        let first = field("recorded-first-entry-id")
            .and_then(|id| StreamId::parse(&id))
            .unwrap_or(StreamId::ZERO);
        Some(added > length && first > after && after != StreamId::ZERO)
    }

    async fn read_loop(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        pos: &mut Position,
    ) -> End {
        let block_ms = self.keepalive.as_millis().max(1) as u64;
        let reply_within = self.keepalive + self.connect_timeout;
        loop {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&*self.key)
                .arg(pos.after.to_string());
            let reply: Value = match tokio::time::timeout(reply_within, cmd.query_async(conn)).await
            {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return moved_or_failed(&e),
                Err(_) => return End::Failed,
            };
            let entries = read_entries(reply);
            let full = entries.len() >= READ_COUNT;
            let before = pos.after;
            for (id, payload) in entries {
                pos.after = pos.after.max(id);
                let Some(m) = decode_message(&payload) else {
                    continue;
                };
                if m.origin == self.origin {
                    continue;
                }
                self.shared.messages.fetch_add(1, Ordering::Relaxed);
                if pos.back_at_ms.is_some_and(|back| id.0 <= back) {
                    self.shared.replayed.fetch_add(1, Ordering::Relaxed);
                }
                if self.tx.send(BusEvent::Message(m)).await.is_err() {
                    return End::Closed;
                }
            }
            // A full read means we are behind: check nothing was trimmed under us.
            if full {
                match self.trimmed_past(conn, before).await {
                    Some(true) => {
                        log_warn!(stream = %self.key, reason = "history_trimmed", "invalidation bus gap: this reader fell behind the stream's history");
                        self.shared.gaps.fetch_add(1, Ordering::Relaxed);
                        if self
                            .tx
                            .send(BusEvent::Gap(GapReason::HistoryTrimmed))
                            .await
                            .is_err()
                        {
                            return End::Closed;
                        }
                    }
                    Some(false) => {}
                    None => return End::Failed,
                }
            }
            if self.tx.is_closed() {
                return End::Closed;
            }
        }
    }
}

fn moved_or_failed(e: &RedisError) -> End {
    match e.redirect_node() {
        Some((addr, _slot)) => match addr.rsplit_once(':') {
            Some((host, port)) => match port.parse() {
                Ok(port) => End::Moved(host.to_owned(), port),
                Err(_) => End::Failed,
            },
            None => End::Failed,
        },
        None => End::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_ignored() {
        let m = Invalidation {
            origin: 42,
            action: Action::Keys(vec!["a".into(), "b:c".into()]),
        };
        let bytes = postcard::to_extend(&m, vec![WIRE_VERSION]).expect("encode");
        assert_eq!(decode_message(&bytes), Some(m));
        assert_eq!(decode_message(b""), None);
        assert_eq!(decode_message(b"\x02junk"), None);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(decode_message(&trailing), None);
    }

    #[test]
    fn stream_ids_compare_as_numbers() {
        let a = StreamId::parse("1700000000000-9").expect("id");
        let b = StreamId::parse("1700000000000-10").expect("id");
        let c = StreamId::parse("1700000000001-0").expect("id");
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "1700000000000-9");
        assert_eq!(StreamId::parse("junk"), None);
        assert_eq!(StreamId::parse("1-x"), None);
    }

    #[test]
    fn xread_replies_parse_in_both_protocols() {
        let bulk = |s: &[u8]| Value::BulkString(s.to_vec());
        let entry = |id: &str, payload: &[u8]| {
            Value::Array(vec![
                bulk(id.as_bytes()),
                Value::Array(vec![bulk(b"m"), bulk(payload)]),
            ])
        };
        let entries = Value::Array(vec![entry("5-0", b"x"), entry("6-1", b"yz")]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk(b"k"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk(b"k"), entries)]);
        let want = vec![
            (StreamId(5, 0), b"x".to_vec()),
            (StreamId(6, 1), b"yz".to_vec()),
        ];
        assert_eq!(read_entries(resp2), want);
        assert_eq!(read_entries(resp3), want);
        assert!(read_entries(Value::Nil).is_empty());
    }

    #[test]
    fn redirects_keep_credentials_and_scheme() {
        let info = redis::Client::open("redis://user:secret@127.0.0.1:7000/")
            .expect("url")
            .get_connection_info()
            .clone();
        let moved = with_addr(&info, "127.0.0.2", 7001);
        assert_eq!(
            moved.addr(),
            &ConnectionAddr::Tcp("127.0.0.2".to_owned(), 7001)
        );
        assert_eq!(moved.redis_settings().password(), Some("secret"));
        assert_eq!(moved.redis_settings().username(), Some("user"));
    }
}
