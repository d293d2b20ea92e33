//! The ghost queue: hashes of keys recently evicted from *small* while still
//! wanted, so one that returns goes straight to *main*.

use std::collections::VecDeque;

use hashbrown::HashTable;

/// Hashes of keys recently evicted from *small*, oldest first, bounded.
pub(super) struct Ghost {
    /// `(hash, sequence)` in the order added; an entry whose sequence no longer
    /// matches `live` was taken or re-added and only ages out.
    ring: VecDeque<(u64, u64)>,
    live: HashTable<(u64, u64)>,
    seq: u64,
    cap: usize,
}

impl Ghost {
    pub(super) fn new(cap: usize) -> Self {
        Ghost {
            ring: VecDeque::new(),
            live: HashTable::new(),
            seq: 0,
            cap,
        }
    }

    pub(super) fn add(&mut self, hash: u64) {
        self.seq += 1;
        let seq = self.seq;
        match self.live.find_mut(hash, |e| e.0 == hash) {
            Some(e) => e.1 = seq,
            None => {
                self.live.insert_unique(hash, (hash, seq), |e| e.0);
            }
        }
        self.ring.push_back((hash, seq));
        while self.ring.len() > self.cap {
            if let Some((old, old_seq)) = self.ring.pop_front()
                && let Ok(e) = self.live.find_entry(old, |e| *e == (old, old_seq))
            {
                e.remove();
            }
        }
    }

    /// Forgets `hash`; true if it was remembered.
    pub(super) fn take(&mut self, hash: u64) -> bool {
        match self.live.find_entry(hash, |e| e.0 == hash) {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn clear(&mut self) {
        self.ring.clear();
        self.live.clear();
    }
}
