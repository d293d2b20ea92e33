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

pub(crate) fn apply_event<K, V, C>(
    inner: &Inner<K, V, C>,
    weak: &Weak<Inner<K, V, C>>,
    event: BusEvent,
) where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Codec + Clone,
{
    match event {
        BusEvent::Message(m) => {
            inner.meters.record(Count::BusMessage);
            match m.action {
                Action::Keys(keys) => {
                    for k in keys {
                        if let Some(key) = K::decode_key(&k) {
                            inner.l1.remove_sync(&key);
                        }
                    }
                }
                Action::Tag(tag) => {
                    inner.l1.invalidate_tag_sync(&tag);
                }
                Action::Prefix(prefix) => {
                    inner.l1.invalidate_prefix_sync(&prefix);
                }
                Action::ClearBefore(ms) => {
                    apply_clear(inner, Timestamp::from_millis(ms));
                }
                // Unknown future actions are treated like Clear: distrust.
                _ => inner.l1.clear(),
            }
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
            match Weak::upgrade(&weak) {
                Some(inner) => *inner.bus_status.lock() = Some(sub.status()),
                None => return,
            }
            while let Some(event) = sub.recv().await {
                let Some(inner) = Weak::upgrade(&weak) else {
                    return;
                };
                apply_event(&inner, &weak, event);
            }
        });
        *self.inner.listener.lock() = Some(task);
    }
}
