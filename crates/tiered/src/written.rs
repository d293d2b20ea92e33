//! Loads' L2 writes, remembered while they are in flight and for a while after
//! they return, so an invalidation heard from another instance too late for
//! the load's fence can still take the write back.
//!
//! The race: this instance reads the source, another changes the key and
//! deletes it from L2, then this instance's write of what it read lands in L2.
//! Every instance would read the old value from L2 until it expires. The
//! other instance's bus message reaches this one after its delete; if it comes
//! while the write is in flight, the write is taken back (the record is
//! *heard*). If it comes after the write returned, L2 still holding exactly
//! this write proves the write landed after the delete (the delete would have
//! removed it otherwise), so the write is removed only in that case, by a
//! compare-and-delete on its envelope header, and published.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use cache_core::{Entry, Timestamp};
use parking_lot::Mutex;

/// How long a returned write stays remembered: the time another instance's
/// message may take to arrive after its delete (its publish is the round trip
/// after the delete, then the bus delivers it; a failed publish is replayed
/// with the delete again, which needs no record).
pub(crate) const TAKE_BACK_WINDOW: Duration = Duration::from_secs(10);

/// At most this many writes remembered; past it the oldest returned ones are
/// forgotten first.
pub(crate) const MAX_REMEMBERED: usize = 16_384;

/// An entry's shape without its value: what its L2 envelope header and its
/// tags are made of.
pub(crate) type Shape = Entry<()>;

/// The shape of `entry`.
pub(crate) fn shape_of<V>(entry: &Entry<V>) -> Shape {
    Entry::from_parts(
        entry.value().map(|_| ()),
        entry.created_at(),
        entry.fresh_until(),
        Some(entry.stale_until()),
        entry.tags().clone(),
    )
}

struct Record {
    id: u64,
    shape: Shape,
    /// The write has not returned yet.
    in_flight: bool,
    /// An invalidation of the key was heard while the write was in flight.
    heard: bool,
}

impl Record {
    /// An invalidation of the record's key was heard: `true` if the write
    /// returned already (the caller takes the record out and the write back);
    /// a write in flight is only marked.
    fn hear(&mut self) -> bool {
        self.heard |= self.in_flight;
        !self.in_flight
    }
}

struct State<K> {
    records: HashMap<K, Record>,
    /// Returned records, oldest first: when each returned, its key, its id.
    returned: VecDeque<(Timestamp, K, u64)>,
    next: u64,
}

/// The remembered writes of one store; see the module docs.
pub(crate) struct Written<K> {
    state: Mutex<State<K>>,
    window: Duration,
    max: usize,
}

impl<K: Hash + Eq + Clone> Written<K> {
    pub(crate) fn new() -> Self {
        Self::with_limits(TAKE_BACK_WINDOW, MAX_REMEMBERED)
    }

    pub(crate) fn with_limits(window: Duration, max: usize) -> Self {
        Written {
            state: Mutex::new(State {
                records: HashMap::new(),
                returned: VecDeque::new(),
                next: 0,
            }),
            window,
            max,
        }
    }

    /// A write of `entry` under `key` is about to be sent; its ticket, or
    /// `None` when as many writes are in flight as can be remembered. A newer
    /// write of the key replaces the older one's record.
    pub(crate) fn begin<V>(&self, key: &K, entry: &Entry<V>, now: Timestamp) -> Option<u64> {
        let mut state = self.state.lock();
        self.expire(&mut state, now);
        while state.records.len() >= self.max {
            let (_, old, id) = state.returned.pop_front()?;
            remove_if(&mut state.records, &old, id);
        }
        let id = state.next;
        state.next += 1;
        state.records.insert(
            key.clone(),
            Record {
                id,
                shape: shape_of(entry),
                in_flight: true,
                heard: false,
            },
        );
        Some(id)
    }

    /// The write with `ticket` returned: `true` if an invalidation of its key
    /// was heard meanwhile (the record is gone: the caller takes the write
    /// back); otherwise it stays remembered for the window.
    pub(crate) fn returned(&self, key: &K, ticket: u64, now: Timestamp) -> bool {
        let mut state = self.state.lock();
        let Some(record) = state.records.get_mut(key).filter(|r| r.id == ticket) else {
            return false;
        };
        if record.heard {
            state.records.remove(key);
            return true;
        }
        record.in_flight = false;
        state.returned.push_back((now, key.clone(), ticket));
        false
    }

    /// Forgets the write with `ticket` (it failed, or was taken back anyway).
    pub(crate) fn forget(&self, key: &K, ticket: u64) {
        remove_if(&mut self.state.lock().records, key, ticket);
    }

    /// An invalidation of `keys` was heard: writes in flight are marked, and
    /// the shapes of returned ones (forgotten now) come back to be taken back
    /// if L2 still holds them.
    pub(crate) fn heard_keys<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a K>,
        now: Timestamp,
    ) -> Vec<(K, Shape)>
    where
        K: 'a,
    {
        let mut state = self.state.lock();
        self.expire(&mut state, now);
        let mut out = Vec::new();
        for key in keys {
            if state.records.get_mut(key).is_some_and(Record::hear)
                && let Some(r) = state.records.remove(key)
            {
                out.push((key.clone(), r.shape));
            }
        }
        out
    }

    /// [`heard_keys`](Self::heard_keys) for every remembered key that `hit`
    /// accepts (a tag or prefix invalidation).
    pub(crate) fn heard_where(
        &self,
        mut hit: impl FnMut(&K, &Shape) -> bool,
        now: Timestamp,
    ) -> Vec<(K, Shape)> {
        let mut state = self.state.lock();
        self.expire(&mut state, now);
        if state.records.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        state.records.retain(|key, record| {
            if !hit(key, &record.shape) || !record.hear() {
                return true;
            }
            out.push((key.clone(), record.shape.clone()));
            false
        });
        out
    }

    /// How many writes are remembered (in flight or returned).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().records.len()
    }

    /// Forgets returned writes older than the window.
    fn expire(&self, state: &mut State<K>, now: Timestamp) {
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        while let Some((at, _, _)) = state.returned.front() {
            if now.as_millis().saturating_sub(at.as_millis()) <= window {
                break;
            }
            if let Some((_, key, id)) = state.returned.pop_front() {
                remove_if(&mut state.records, &key, id);
            }
        }
    }
}

/// Removes `key`'s record if it is still the one with `id` (a newer write of
/// the key may have replaced it).
fn remove_if<K: Hash + Eq>(records: &mut HashMap<K, Record>, key: &K, id: u64) {
    if records.get(key).is_some_and(|r| r.id == id) {
        records.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn entry(created: u64) -> Entry<&'static str> {
        Entry::new("v", at(created), Duration::from_secs(60))
    }

    fn written() -> Written<u64> {
        Written::with_limits(Duration::from_millis(1_000), 4)
    }

    #[test]
    fn an_invalidation_heard_in_flight_marks_the_write_for_taking_back() {
        let w = written();
        let t = w.begin(&1, &entry(5), at(10)).expect("ticket");
        assert!(
            w.heard_keys([&1], at(20)).is_empty(),
            "in flight: marked only"
        );
        assert!(w.returned(&1, t, at(30)), "heard while in flight");
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn an_invalidation_heard_after_the_write_returned_hands_back_its_shape_once() {
        let w = written();
        let t = w.begin(&1, &entry(5), at(10)).expect("ticket");
        assert!(!w.returned(&1, t, at(30)));
        let heard = w.heard_keys([&1, &2], at(500));
        assert_eq!(heard.len(), 1);
        assert_eq!(heard[0].0, 1);
        assert_eq!(heard[0].1.created_at(), at(5));
        assert!(w.heard_keys([&1], at(600)).is_empty(), "handed back once");
    }

    #[test]
    fn returned_writes_are_forgotten_after_the_window() {
        let w = written();
        let t = w.begin(&1, &entry(5), at(10)).expect("ticket");
        w.returned(&1, t, at(30));
        assert!(w.heard_keys([&1], at(1_031)).is_empty());
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_newer_write_of_the_key_replaces_the_older_record() {
        let w = written();
        let old = w.begin(&1, &entry(5), at(10)).expect("ticket");
        w.returned(&1, old, at(20));
        let new = w.begin(&1, &entry(25), at(30)).expect("ticket");
        // The old write's expiry must not forget the new one.
        assert!(!w.returned(&1, new, at(1_025)));
        assert!(!w.returned(&1, old, at(1_026)), "the old ticket is gone");
        let heard = w.heard_keys([&1], at(1_030));
        assert_eq!(heard.len(), 1);
        assert_eq!(heard[0].1.created_at(), at(25));
    }

    #[test]
    fn a_failed_write_is_forgotten() {
        let w = written();
        let t = w.begin(&1, &entry(5), at(10)).expect("ticket");
        w.forget(&1, t);
        assert_eq!(w.len(), 0);
        assert!(!w.returned(&1, t, at(20)));
    }

    #[test]
    fn tag_and_prefix_invalidations_match_by_what_the_entry_is() {
        let w = written();
        let tagged = Entry::new("v", at(5), Duration::from_secs(60))
            .with_tags(["t"])
            .expect("tag");
        for k in [1, 2] {
            let t = w.begin(&k, &tagged, at(10)).expect("ticket");
            w.returned(&k, t, at(20));
        }
        let in_flight = w.begin(&3, &tagged, at(30)).expect("ticket");
        let heard = w.heard_where(|_, s| s.tags().contains("t"), at(40));
        let mut keys: Vec<u64> = heard.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        assert_eq!(keys, [1, 2]);
        assert!(
            w.returned(&3, in_flight, at(50)),
            "the one in flight is marked"
        );
    }

    #[test]
    fn the_oldest_returned_writes_make_room_and_in_flight_ones_are_never_dropped() {
        let w = written();
        for k in 0..4u64 {
            let t = w.begin(&k, &entry(5), at(10)).expect("ticket");
            if k < 2 {
                w.returned(&k, t, at(10 + k));
            }
        }
        // Full: the two returned ones go first, oldest first.
        assert!(w.begin(&10, &entry(5), at(20)).is_some());
        assert!(w.heard_keys([&0], at(21)).is_empty(), "key 0 made room");
        assert!(w.begin(&11, &entry(5), at(22)).is_some());
        assert_eq!(w.len(), 4);
        // Only writes in flight now: nothing to drop, nothing remembered.
        assert!(w.begin(&12, &entry(5), at(23)).is_none());
        assert_eq!(w.len(), 4);
    }
}
