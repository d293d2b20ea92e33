//! The invalidation bus: Redis pub/sub messages that tell other instances to drop
//! their in-process (L1) copies.
//!
//! Every store namespace has one channel, `{prefix}:{namespace}#bus`. A message names
//! its origin (a random id per [`InvalidationBus`]), so a subscriber skips its own.
//! Pub/sub is fire-and-forget: a subscriber that is disconnected misses messages. The
//! subscription therefore reconnects and resubscribes by itself and then reports
//! [`BusEvent::Gap`], so the receiver can distrust what it cached meanwhile. A receiver
//! too slow to keep up gets a `Gap` too, instead of silently losing messages.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cache_core::{CacheError, Codec};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::conn::Target;
use crate::store::RedisStore;

/// Wire format version of bus messages.
const WIRE_VERSION: u8 = 1;
/// How often an idle subscription pings Redis to notice a dead connection.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Events buffered per subscription before the receiver is considered lagging.
const BUFFER: usize = 1024;

/// What to invalidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Why a subscription may have missed messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapReason {
    /// The connection was lost; it has been re-established and resubscribed.
    Reconnected,
    /// The receiver fell behind and buffered messages were dropped.
    Lagged,
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// An invalidation published by another instance.
    Message(Invalidation),
    /// Messages may have been missed; distrust anything cached before this point.
    Gap(GapReason),
}

/// Publishes and subscribes to one namespace's invalidation channel.
#[derive(Debug, Clone)]
pub struct InvalidationBus<C = cache_core::Postcard> {
    store: RedisStore<C>,
    channel: Arc<str>,
    origin: u64,
}

impl<C: Codec + Clone> RedisStore<C> {
    /// The invalidation bus of this store's namespace, with a fresh origin id.
    #[must_use]
    pub fn bus(&self) -> InvalidationBus<C> {
        let space = self.key_space();
        InvalidationBus {
            store: self.clone(),
            channel: format!("{}:{}#bus", space.prefix(), space.namespace()).into(),
            origin: std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
        }
    }
}

impl<C: Codec> InvalidationBus<C> {
    /// This instance's origin id (messages it publishes carry it; its own
    /// subscriptions skip them).
    #[must_use]
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// The pub/sub channel name.
    #[must_use]
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Publishes `action` to every subscriber of the namespace; returns how many
    /// subscriptions Redis delivered it to (including this instance's own).
    pub async fn publish(&self, action: Action) -> Result<u64, CacheError> {
        let message = Invalidation {
            origin: self.origin,
            action,
        };
        let mut payload = vec![WIRE_VERSION];
        payload = postcard::to_extend(&message, payload)
            .map_err(|e| CacheError::Encode(e.to_string()))?;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&*self.channel).arg(payload);
        self.store.query("publish", &cmd).await
    }

    /// Subscribes with a dedicated connection, kept alive (and resubscribed) by a
    /// background task until the [`Subscription`] is dropped. Waits for the first
    /// subscribe attempt; if Redis is unreachable the subscription still returns, keeps
    /// trying, and reports a [`BusEvent::Gap`] once it gets through.
    pub async fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::channel(BUFFER);
        let connected = Arc::new(AtomicBool::new(false));
        let (first_tx, first_rx) = oneshot::channel();
        let inner = self.store.inner().clone();
        let task = tokio::spawn(run_subscription(
            inner.conns.target.clone(),
            inner.conns.connect_timeout,
            self.channel.clone(),
            self.origin,
            tx,
            connected.clone(),
            first_tx,
        ));
        let _ = first_rx.await;
        Subscription {
            rx,
            connected,
            task,
        }
    }
}

/// A live subscription; see [`InvalidationBus::subscribe`].
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<BusEvent>,
    connected: Arc<AtomicBool>,
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

    /// Whether the subscription is currently subscribed (messages published now
    /// will arrive).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// A cheap handle that tells whether this subscription is connected, usable
    /// after the subscription has moved into another task.
    #[must_use]
    pub fn connection_status(&self) -> ConnectionStatus {
        ConnectionStatus(self.connected.clone())
    }
}

/// Whether a [`Subscription`] is currently subscribed; see
/// [`Subscription::connection_status`].
#[derive(Debug, Clone)]
pub struct ConnectionStatus(Arc<AtomicBool>);

impl ConnectionStatus {
    /// `true` while subscribed.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Delivers events to the receiver; when its buffer is full, drops the event and
/// owes it a `Gap`.
struct Outbox {
    tx: mpsc::Sender<BusEvent>,
    owe_gap: bool,
}

impl Outbox {
    /// `false` when the receiver is gone.
    fn send(&mut self, event: BusEvent) -> bool {
        if self.owe_gap {
            match self.tx.try_send(BusEvent::Gap(GapReason::Lagged)) {
                Ok(()) => self.owe_gap = false,
                Err(mpsc::error::TrySendError::Full(_)) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.owe_gap = true;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
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

/// Clients to subscribe through: the server, or each cluster seed in turn
/// (a cluster broadcasts PUBLISH to every node, so any node will do).
fn pubsub_clients(target: &Target) -> Vec<redis::Client> {
    match target {
        Target::Standalone { client, .. } => vec![client.clone()],
        Target::Cluster { urls, .. } => urls
            .iter()
            .filter_map(|u| redis::Client::open(u.as_str()).ok())
            .collect(),
    }
}

async fn run_subscription(
    target: Target,
    connect_timeout: Duration,
    channel: Arc<str>,
    origin: u64,
    tx: mpsc::Sender<BusEvent>,
    connected: Arc<AtomicBool>,
    first: oneshot::Sender<()>,
) {
    let clients = pubsub_clients(&target);
    let mut outbox = Outbox { tx, owe_gap: false };
    let mut first = Some(first);
    let mut ever_subscribed = false;
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0usize;
    loop {
        let client = &clients[attempt % clients.len().max(1)];
        attempt += 1;
        let subscribed = tokio::time::timeout(connect_timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&*channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match subscribed {
            Ok(Ok(p)) => p,
            _ => {
                if let Some(f) = first.take() {
                    let _ = f.send(());
                }
                if outbox.tx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        connected.store(true, Ordering::Release);
        // A gap is owed for any period without a subscription since subscribe() was
        // called: after a reconnect, or when the very first attempt failed.
        if (ever_subscribed || first.is_none())
            && !outbox.send(BusEvent::Gap(GapReason::Reconnected))
        {
            return;
        }
        ever_subscribed = true;
        if let Some(f) = first.take() {
            let _ = f.send(());
        }
        let (mut sink, mut stream) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        if let Some(m) = decode_message(msg.get_payload_bytes())
                            && m.origin != origin
                            && !outbox.send(BusEvent::Message(m))
                        {
                            return;
                        }
                    }
                    None => break,
                },
                _ = ping.tick() => {
                    let alive = tokio::time::timeout(connect_timeout, sink.ping::<String>()).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        break;
                    }
                    if outbox.tx.is_closed() {
                        return;
                    }
                }
            }
        }
        connected.store(false, Ordering::Release);
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

    #[tokio::test]
    async fn a_full_outbox_owes_one_gap() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut outbox = Outbox { tx, owe_gap: false };
        let msg = |n: u64| {
            BusEvent::Message(Invalidation {
                origin: n,
                action: Action::Clear,
            })
        };
        assert!(outbox.send(msg(1)));
        assert!(outbox.send(msg(2)));
        assert!(outbox.send(msg(3))); // dropped: buffer full
        assert_eq!(rx.recv().await, Some(msg(1)));
        assert_eq!(rx.recv().await, Some(msg(2)));
        assert!(outbox.send(msg(4)));
        assert_eq!(rx.recv().await, Some(BusEvent::Gap(GapReason::Lagged)));
        assert_eq!(rx.recv().await, Some(msg(4)));
        drop(rx);
        assert!(!outbox.send(msg(5)));
    }
}
