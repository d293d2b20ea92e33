//! Writes and invalidations to L2 and the bus, and the recovery worker that
//! replays what could not be sent during an outage.

use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cache_core::{CacheError, CacheKey, Codec, DecodeKey, Entry, Store};
use cache_store_redis::{Action, InvalidationBus, RedisStore};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::guard::L2Op;
use crate::log::{log_info, log_warn};
use crate::meters::Count;
use crate::recovery::{Pending, Pushed};
use crate::tiered::{Inner, TieredStore};

/// How long the recovery worker waits between attempts while Redis is away.
pub(crate) const RECOVERY_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(25), Duration::from_millis(250));

/// Drains the recovery queue: waits until L2 answers a `PING`, then replays the
/// queue front to back; a replay that fails with a backend fault goes back to
/// the front and the worker waits again. Ends when the queue is empty or the
/// store is gone.
pub(crate) async fn recover<K, V, C>(weak: Weak<Inner<K, V, C>>)
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    let mut backoff = RECOVERY_BACKOFF.0;
    let mut drained = 0u64;
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let store = TieredStore { inner };
        let reachable = match &store.inner.l2 {
            Some(l2) => l2.store.ping().await.is_ok(),
            None => true,
        };
        if reachable {
            store.breaker_saw_redis_answer();
        }
        if reachable {
            backoff = RECOVERY_BACKOFF.0;
            loop {
                let (op, at) = {
                    let mut q = store.inner.recovery.lock();
                    match q.pop() {
                        Some(popped) => {
                            q.busy = true;
                            popped
                        }
                        None => {
                            q.worker = false;
                            if drained > 0 {
                                log_info!(cache = %store.inner.name, replayed = drained, "recovery queue drained: writes made while Redis was unreachable are applied and published");
                            }
                            return;
                        }
                    }
                };
                let replayed = store.replay(&op, at).await;
                let mut q = store.inner.recovery.lock();
                q.busy = false;
                match replayed {
                    Ok(()) => {
                        drained += 1;
                        store.inner.meters.record(Count::RecoveryReplayed);
                    }
                    Err(e) if e.is_backend_fault() => {
                        q.retry(op, at);
                        break;
                    }
                    // L2 refuses it for good (e.g. too large): retrying cannot help.
                    Err(_) => store.inner.meters.record(Count::RecoveryDropped),
                }
            }
        }
        let wake = store.inner.recovery_wake.clone();
        drop(store);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = wake.notified() => {}
        }
        backoff = (backoff * 2).min(RECOVERY_BACKOFF.1);
    }
}

impl<K, V> Pending<K, V>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub(crate) fn l2_op(&self) -> L2Op {
        match self {
            Pending::Put(..) => L2Op::Put,
            Pending::Remove(_) => L2Op::Remove,
            Pending::Tag(_) => L2Op::InvalidateTag,
            Pending::Prefix(_) => L2Op::InvalidatePrefix,
            Pending::Clear(_) => L2Op::Clear,
        }
    }

    /// The bus message that tells other instances about it.
    pub(crate) fn action(&self) -> Action {
        match self {
            Pending::Put(k, _) | Pending::Remove(k) => Action::Keys(vec![k.to_key_string()]),
            Pending::Tag(t) => Action::Tag(t.clone()),
            Pending::Prefix(p) => Action::Prefix(p.clone()),
            Pending::Clear(at) => Action::ClearBefore(at.as_millis()),
        }
    }

    /// Whether [`apply_l2`](Self::apply_l2) publishes it itself (a clear raises
    /// the epoch and publishes in one script).
    pub(crate) fn publishes_itself(&self) -> bool {
        matches!(self, Pending::Clear(_))
    }

    /// Applies it to L2; what L2 reports (entries removed; 0 for a put or a
    /// clear). A put whose entry has expired meanwhile writes nothing. A clear
    /// raises the epoch and, with a `bus`, publishes in the same round trip.
    pub(crate) async fn apply_l2<C: Codec + Clone>(
        &self,
        l2: &RedisStore<C>,
        bus: Option<&InvalidationBus<C>>,
        now: cache_core::Timestamp,
    ) -> Result<u64, CacheError> {
        match self {
            Pending::Put(k, e) => {
                if e.is_expired(now) {
                    return Ok(0);
                }
                l2.put(k.clone(), e.clone()).await.map(|()| 0)
            }
            Pending::Remove(k) => Store::<K, V>::remove(l2, k).await.map(u64::from),
            Pending::Tag(t) => Store::<K, V>::invalidate_tag(l2, t).await,
            Pending::Prefix(p) => Store::<K, V>::invalidate_prefix(l2, p).await,
            Pending::Clear(at) => match bus {
                Some(bus) => bus.publish_clear(*at).await.map(|_| 0),
                None => l2.raise_clear_epoch(*at).await.map(|()| 0),
            },
        }
    }
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Sends a write or invalidation to L2 and the bus; when either cannot take it
    /// now, or earlier operations still wait, it joins the recovery queue and is
    /// replayed (applied to L2, published) once Redis answers again. Returns what
    /// L2 reported (0 when queued). Fail-closed, an L2 fault is returned, and an
    /// invalidation is queued all the same (this instance's L1 already changed).
    pub(crate) async fn write_l2(&self, op: Pending<K, V>) -> Result<u64, CacheError> {
        // Memory only: what follows (the copy to send, the bus message with
        // its encoded key, the time, the batch) would all be thrown away.
        if self.inner.l2.is_none() {
            return Ok(0);
        }
        let (l2_op, action) = (op.l2_op(), (!op.publishes_itself()).then(|| op.action()));
        let send = op.clone();
        let now = self.inner.l1.clock().now();
        let bus = self.inner.l2.as_ref().and_then(|l2| l2.bus.as_ref());
        self.write_batch(l2_op, vec![op], action, |l2| async move {
            send.apply_l2(l2, bus, now).await
        })
        .await
    }

    /// [`write_l2`](Self::write_l2) for operations that go to L2 as one batch
    /// (`send`) and to the bus as one message (`None`: `send` published it).
    pub(crate) async fn write_batch<'a, F, Fut>(
        &'a self,
        l2_op: L2Op,
        ops: Vec<Pending<K, V>>,
        action: Option<Action>,
        send: F,
    ) -> Result<u64, CacheError>
    where
        F: FnOnce(&'a RedisStore<C>) -> Fut,
        Fut: std::future::Future<Output = Result<u64, CacheError>>,
    {
        if self.inner.l2.is_none() || ops.is_empty() {
            return Ok(0);
        }
        if self.inner.recovery.lock().is_pending() {
            self.enqueue_all(ops);
            return Ok(0);
        }
        match self.guarded(l2_op, send).await {
            Ok(Some(n)) => {
                let Some(action) = action else {
                    return Ok(n);
                };
                match self.publish(action).await {
                    Ok(true) => Ok(n),
                    Ok(false) => {
                        self.enqueue_all(ops);
                        Ok(n)
                    }
                    Err(e) => {
                        self.enqueue_all(ops);
                        Err(e)
                    }
                }
            }
            Ok(None) => {
                self.enqueue_all(ops);
                Ok(0)
            }
            Err(e) => {
                // Fail-closed: a put that failed wrote nothing anywhere (the
                // caller is told); an invalidation already changed this L1.
                if e.is_backend_fault() {
                    self.enqueue_all(
                        ops.into_iter()
                            .filter(|op| !matches!(op, Pending::Put(..)))
                            .collect(),
                    );
                }
                Err(e)
            }
        }
    }

    pub(crate) fn enqueue_all(&self, ops: Vec<Pending<K, V>>) {
        for op in ops {
            self.enqueue(op);
        }
    }

    /// Adds `op` to the recovery queue and makes sure a worker drains it.
    pub(crate) fn enqueue(&self, op: Pending<K, V>) {
        let start = {
            let at = self.inner.l1.clock().now();
            let mut q = self.inner.recovery.lock();
            if q.push(op, at) == Pushed::DroppedOldest {
                self.inner.meters.record(Count::RecoveryDropped);
                if self.inner.logs.drop_logged.allow(at.as_millis()) {
                    log_warn!(cache = %self.inner.name, "recovery queue full: the oldest queued write was dropped; its keys may be served stale elsewhere until they expire");
                }
            }
            let start = !q.worker && tokio::runtime::Handle::try_current().is_ok();
            q.worker |= start;
            start
        };
        if start {
            tokio::spawn(recover(Arc::downgrade(&self.inner)));
        } else {
            self.inner.recovery_wake.notify_one();
        }
    }

    /// Applies one queued operation straight to L2 (past the breaker: this is the
    /// only caller while Redis comes back), re-applies an invalidation made at
    /// `at` to L1 (a read may have backfilled the old value from L2 meanwhile;
    /// entries made since, loaded from the source, stay) and publishes it.
    pub(crate) async fn replay(
        &self,
        op: &Pending<K, V>,
        at: cache_core::Timestamp,
    ) -> Result<(), CacheError> {
        let Some(l2) = &self.inner.l2 else {
            return Ok(());
        };
        op.apply_l2(&l2.store, l2.bus.as_ref(), self.inner.l1.clock().now())
            .await?;
        let l1 = &self.inner.l1;
        let older = |e: &Entry<V>| e.created_at() < at;
        match op {
            Pending::Put(..) => {}
            Pending::Remove(k) => {
                // A read begun before now (L2 held the old value until just
                // now) must not backfill it.
                l1.fence_key(k);
                if l1.peek_sync(k).is_some_and(|e| older(&e)) {
                    l1.remove_sync(k);
                }
            }
            Pending::Tag(t) => {
                l1.remove_where(|_, e| older(e) && e.tags().iter().any(|x| x == t));
            }
            Pending::Clear(_) => {
                l1.remove_where(|_, e| older(e));
            }
            Pending::Prefix(p) => {
                let mut buf = String::new();
                l1.remove_where(|k, e| {
                    if !older(e) {
                        return false;
                    }
                    buf.clear();
                    k.encode_key(&mut buf);
                    buf.starts_with(p.as_str())
                });
            }
        }
        if let Some(bus) = &l2.bus
            && !op.publishes_itself()
        {
            bus.publish(op.action()).await?;
        }
        Ok(())
    }
}
