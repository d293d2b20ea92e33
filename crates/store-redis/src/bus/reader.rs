//! The subscription's background task: a dedicated connection reading the stream
//! with a blocking `XREAD` from the last id seen, reconnecting (and following
//! `MOVED` in a cluster) when it breaks, and telling a reconnect that replays
//! apart from a gap.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{ConnectionAddr, ConnectionInfo, RedisError, Value};
use tokio::sync::{mpsc, oneshot};

use super::{
    BusEvent, FIELD, GapReason, MAX_BACKOFF, MAX_MESSAGE_SIZE, MIN_BACKOFF, READ_COUNT,
    START_MARGIN_MS, Shared, decode_message,
};
use crate::conn::Target;
use crate::health::info_field;
use crate::log::{log_info, log_warn};

/// The TLS server name mapping of a standalone target, if any.
pub(super) fn pinned(target: &Target) -> Option<crate::security::PinnedHost> {
    match target {
        Target::Standalone { pinned, .. } => pinned.clone(),
        Target::Cluster { .. } => None,
    }
}

/// Where a subscription starts looking: the server, or each cluster seed.
pub(super) fn seeds(target: &Target) -> Vec<ConnectionInfo> {
    match target {
        Target::Standalone { client, .. } => vec![client.get_connection_info().clone()],
        Target::Cluster { seeds, .. } => seeds.to_vec(),
    }
}

/// `info` pointed at another node (credentials and TLS settings kept).
pub(super) fn with_addr(info: &ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
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
pub(super) struct StreamId(u64, u64);

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

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The items of an array, or the keys and values of a map in turn.
pub(super) fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// `(id, payload)` pairs of an `XREAD` reply for one stream.
pub(super) fn read_entries(reply: Value) -> Vec<(StreamId, Vec<u8>)> {
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

/// How one connection's session ended.
pub(super) enum End {
    /// The receiver is gone: stop.
    Closed,
    /// The stream lives on another node.
    Moved(String, u16),
    /// Connecting or reading failed; try again after a pause.
    Failed,
}

/// Where a subscription is in the stream.
pub(super) struct Position {
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
    /// When the subscription started (Unix ms).
    started_ms: u64,
}

/// The subscription's background task.
pub(super) struct Reader {
    pub(super) seeds: Vec<ConnectionInfo>,
    /// A TLS server name mapped to the real host, as the store's connections do.
    pub(super) pinned: Option<crate::security::PinnedHost>,
    pub(super) connect_timeout: Duration,
    pub(super) keepalive: Duration,
    pub(super) key: Arc<str>,
    pub(super) origin: u64,
    pub(super) shared: Arc<Shared>,
    pub(super) tx: mpsc::Sender<BusEvent>,
}

impl Reader {
    pub(super) async fn run(self, first: oneshot::Sender<()>) {
        let mut first = Some(first);
        let started_ms = now_ms();
        let mut pos = Position {
            after: StreamId::ZERO,
            set: false,
            run_id: None,
            lost: false,
            back_at_ms: None,
            started_ms,
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
        let mut config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(reply_within));
        if let Some(pinned) = &self.pinned {
            config = config.set_dns_resolver(pinned.clone());
        }
        let connecting = crate::race::race_connect(self.connect_timeout, None, move || {
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
            Ok(Err(e)) => return self.failed_with(&e),
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
            // First contact: read from a little before subscribe() was called,
            // not from the stream's end: an instance may have filled its L1
            // while this first connect (a slow TLS handshake, a busy server)
            // was still under way, and the invalidations published meanwhile
            // must reach it. Older ones find nothing to drop.
            pos.after = StreamId(pos.started_ms.saturating_sub(START_MARGIN_MS), 0);
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
        self.shared.denied.store(false, Ordering::Release);
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
                Ok(Err(e)) => return self.failed_with(&e),
                Err(_) => return End::Failed,
            };
            let entries = read_entries(reply);
            let full = entries.len() >= READ_COUNT;
            let before = pos.after;
            for (id, payload) in entries {
                pos.after = pos.after.max(id);
                if payload.len() > MAX_MESSAGE_SIZE {
                    // Not ours (ours are split below the limit): dropped, counted.
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let Some(m) = decode_message(&payload) else {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
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

impl Reader {
    /// How a command's error ends the session; an ACL refusal is remembered
    /// (health reports it: reconnecting cannot fix a missing permission).
    fn failed_with(&self, e: &RedisError) -> End {
        if crate::conn::is_denial(e) {
            self.shared.denied.store(true, Ordering::Release);
        }
        moved_or_failed(e)
    }
}

pub(super) fn moved_or_failed(e: &RedisError) -> End {
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
