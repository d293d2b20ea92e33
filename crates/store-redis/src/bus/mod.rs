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
use std::time::Duration;

use cache_core::{CacheError, Codec};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

mod epoch;
mod reader;

use crate::store::RedisStore;
use reader::{Reader, pinned, seeds};

/// Wire format version of bus messages.
const WIRE_VERSION: u8 = 1;
/// The stream field that holds a message.
pub(crate) const FIELD: &str = "m";
/// Default for [`InvalidationBus::keepalive`].
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(1);
/// Default for [`InvalidationBus::history`].
pub const DEFAULT_HISTORY: u64 = 10_000;
/// Longest wait between reconnect attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// First wait between reconnect attempts.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(25);
/// Largest bus message a subscriber accepts (64 KiB); longer or undecodable
/// ones are dropped and counted ([`BusStats::dropped`]). Publishing splits a
/// long list of keys into messages under it.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Events buffered per subscription (the reader waits when it is full).
const BUFFER: usize = 1024;
/// Messages read per `XREAD`.
pub(crate) const READ_COUNT: usize = 256;
/// A subscription that could not reach Redis when it started reads from this long
/// before it started, so messages published while it was connecting are not missed.
pub(crate) const START_MARGIN_MS: u64 = 2_000;

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
    /// Everything in the namespace (this L1 only: nothing tells when; see
    /// [`ClearBefore`](Action::ClearBefore)).
    Clear,
    /// Everything in the namespace created before this time (Unix milliseconds):
    /// the namespace's clear epoch was raised to it (see
    /// [`InvalidationBus::publish_clear`]).
    ClearBefore(u64),
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
            key: bus_key(space).into(),
            origin: random_origin(),
            keepalive: DEFAULT_KEEPALIVE,
            history: DEFAULT_HISTORY,
        }
    }
}

/// The stream key of a namespace's bus.
pub(crate) fn bus_key(space: &cache_core::KeySpace) -> String {
    format!("{}:{}#bus", space.prefix(), space.namespace())
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
        let payload = self.payload(&action)?;
        if payload.len() > MAX_MESSAGE_SIZE {
            return self.publish_split(action).await;
        }
        self.append(payload).await
    }

    /// Publishes an action too long for one message: a list of keys in parts
    /// under [`MAX_MESSAGE_SIZE`]; anything else becomes a clear of the
    /// receivers' L1 (no single tag or prefix is that long in practice).
    async fn publish_split(&self, action: Action) -> Result<String, CacheError> {
        let Action::Keys(keys) = action else {
            return self.append(self.payload(&Action::Clear)?).await;
        };
        let mut last = String::new();
        let (mut part, mut size) = (Vec::new(), 0);
        for key in keys {
            // postcard: a length prefix (at most 5 bytes) and the bytes.
            let cost = key.len() + 5;
            if !part.is_empty() && size + cost > MAX_MESSAGE_SIZE - 64 {
                last = self
                    .append(self.payload(&Action::Keys(std::mem::take(&mut part)))?)
                    .await?;
                size = 0;
            }
            size += cost;
            part.push(key);
        }
        if !part.is_empty() {
            last = self.append(self.payload(&Action::Keys(part))?).await?;
        }
        Ok(last)
    }

    /// `XADD`s one encoded message.
    async fn append(&self, payload: Vec<u8>) -> Result<String, CacheError> {
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

    /// The encoded message carrying `action` from this origin.
    fn payload(&self, action: &Action) -> Result<Vec<u8>, CacheError> {
        // Encodes exactly as an `Invalidation` (serde writes a reference as
        // its target), without taking the action.
        #[derive(Serialize)]
        struct Message<'a> {
            origin: u64,
            action: &'a Action,
        }
        let message = Message {
            origin: self.origin,
            action,
        };
        postcard::to_extend(&message, vec![WIRE_VERSION])
            .map_err(|e| CacheError::Encode(e.to_string()))
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
            pinned: pinned(&inner.conns.target),
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
pub(crate) struct Shared {
    pub(crate) connected: AtomicBool,
    /// The last session ended on an ACL refusal (`NOPERM`, `NOAUTH`, …).
    pub(crate) denied: AtomicBool,
    pub(crate) connects: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) dropped: AtomicU64,
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
    /// Messages dropped unread: over [`MAX_MESSAGE_SIZE`], or not a message
    /// of this bus (another version, garbage).
    pub dropped: u64,
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

    /// Whether Redis refused the subscription's commands (an ACL user without
    /// access to the bus stream): reconnecting will not help until the user's
    /// permissions change. Cleared once a session is established.
    #[must_use]
    pub fn is_denied(&self) -> bool {
        self.0.denied.load(Ordering::Acquire)
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
            dropped: s.dropped.load(Ordering::Relaxed),
        }
    }
}

pub(crate) fn decode_message(bytes: &[u8]) -> Option<Invalidation> {
    let (&version, rest) = bytes.split_first()?;
    if version != WIRE_VERSION {
        return None;
    }
    let (message, tail) = postcard::take_from_bytes::<Invalidation>(rest).ok()?;
    tail.is_empty().then_some(message)
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
}
