//! The bus listener: other instances' invalidations applied to this L1, and the
//! gap policy when history was lost.

use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cache_core::{CacheKey, Codec, DecodeKey, Timestamp};
use cache_store_redis::{Action, BusEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clear::{apply_clear, sync_epoch};
use crate::config::GapPolicy;
use crate::log::log_warn;
use crate::meters::Count;
use crate::tiered::{Inner, TieredStore};
use crate::written::Shape;

pub(crate) fn apply_event<K, V, C>(
    inner: &Inner<K, V, C>,
    weak: &Weak<Inner<K, V, C>>,
    event: BusEvent,
) where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    match event {
        BusEvent::Message(m) => {
            inner.meters.record(Count::BusMessage);
            let (written, now) = (&inner.written, inner.l1.clock().now());
            let heard = match m.action {
                Action::Keys(keys) => {
                    let keys: Vec<K> = keys.iter().filter_map(|k| K::decode_key(k)).collect();
                    for key in &keys {
                        inner.l1.remove_sync(key);
                    }
                    written.heard_keys(&keys, now)
                }
                Action::Tag(tag) => {
                    inner.l1.invalidate_tag_sync(&tag);
                    written.heard_where(|_, shape| shape.tags().contains(&tag), now)
                }
                Action::Prefix(prefix) => {
                    inner.l1.invalidate_prefix_sync(&prefix);
                    let mut buf = String::new();
                    written.heard_where(
                        |key, _| {
                            buf.clear();
                            key.encode_key(&mut buf);
                            buf.starts_with(prefix.as_str())
                        },
                        now,
                    )
                }
                // A clear needs no taking back: entries created before its
                // epoch read as misses everywhere.
                Action::ClearBefore(ms) => {
                    apply_clear(inner, Timestamp::from_millis(ms));
                    Vec::new()
                }
                // Unknown future actions are treated like Clear: distrust.
                _ => {
                    inner.l1.clear();
                    Vec::new()
                }
            };
            take_back_late(weak, heard);
        }
        BusEvent::Gap(reason) => {
            log_warn!(cache = %inner.name, reason = reason.as_str(), policy = ?inner.gap_policy, "invalidation bus gap: applying the gap policy to L1");
            let _ = reason;
            inner.meters.record(Count::BusGap);
            // A clear may have been among what was lost.
            if tokio::runtime::Handle::try_current().is_ok() {
                tokio::spawn(sync_epoch(weak.clone()));
            }
            match inner.gap_policy {
                GapPolicy::Clear => inner.l1.clear(),
                GapPolicy::Revalidate => {
                    inner.l1.cap_fresh(Duration::ZERO);
                }
                GapPolicy::Shorten(within) => {
                    inner.l1.cap_fresh(within);
                }
            }
        }
    }
}

/// The bus reconnected and delivered: Redis answers this instance again, so
/// an open breaker stops waiting and the next L2 call probes. Without this, an
/// instance back from a partition replayed what it had missed (the keys others
/// invalidated meanwhile) while its breaker still waited, and read every one of
/// those keys back from the source instead of from L2, where the others had
/// put the new values (chaos `partition`: 10 of 10 such keys). Only on a
/// reconnect, not on every message: a bus that keeps delivering while data
/// calls time out (a slow Redis) is no sign that those calls would succeed.
fn rejoined<K, V, C>(inner: &Inner<K, V, C>)
where
    C: Codec + Clone,
{
    if let Some(l2) = &inner.l2 {
        l2.breaker.end_open_wait();
    }
}

/// Loads' L2 writes that returned before an invalidation of their key was
/// heard: each is taken back if L2 still holds it, in the background (see
/// `written.rs`).
fn take_back_late<K, V, C>(weak: &Weak<Inner<K, V, C>>, heard: Vec<(K, Shape)>)
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    if heard.is_empty() || tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let Some(inner) = Weak::upgrade(weak) else {
        return;
    };
    let in_flight = inner.background.start();
    let store = TieredStore { inner };
    tokio::spawn(async move {
        for (key, shape) in heard {
            store.take_back_written(key, shape).await;
        }
        drop(in_flight);
    });
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    pub(crate) fn start_listener(&self) {
        self.spawn_epoch_sync();
        let Some(bus) = self.inner.l2.as_ref().and_then(|l2| l2.bus.clone()) else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut sub = bus.subscribe().await;
            let status = sub.status();
            match Weak::upgrade(&weak) {
                Some(inner) => *inner.bus_status.lock() = Some(status.clone()),
                None => return,
            }
            let mut connects = status.stats().connects;
            while let Some(event) = sub.recv().await {
                let Some(inner) = Weak::upgrade(&weak) else {
                    return;
                };
                let now = status.stats().connects;
                if now != connects {
                    connects = now;
                    rejoined(&inner);
                }
                apply_event(&inner, &weak, event);
            }
        });
        *self.inner.listener.lock() = Some(task);
    }
}
