//! How often keys were wanted recently: a count-min sketch of 4-bit counters,
//! halved after at least 80 increments per entry of the shard, so old
//! popularity fades (the TinyLFU idea, Einziger et al., 2017).
//!
//! A key counts once per insert of a key not held (the miss that led to it)
//! and once per read that eviction consumed (a
//! read only bumps the entry's own small counter under the read lock; when
//! eviction passes over the entry, that read reaches the sketch). So hits stay
//! writes-free while the sketch still learns what is popular, including keys
//! that are no longer held.

use super::{LINE_WORDS, line, line_mut};

/// Four counters per key, each in its own 64-bit word of sixteen 4-bit counters,
/// all four words in one 64-byte block: a count touches one cache line.
const ROWS: usize = 4;
/// Words per block (one cache line).
const BLOCK: usize = LINE_WORDS;
/// Largest counter value.
const MAX: u64 = 15;
/// Words in the smallest table (a multiple of [`BLOCK`]): a small shard still tells apart the keys of a
/// working set many times its size (a loop over 1,000 keys at 10 entries).
const MIN_WIDTH: usize = 256;
/// Halve all counters after this many increments per word of the table…
const SAMPLE_PER_WORD: usize = 10;
/// … and after no fewer than this many per entry of the shard. A loop over
/// a few times the shard's keys counts about one increment per key and pass;
/// halved every 10 per entry (what a table sized to the shard gives), every
/// key looks as new as the candidate that just missed, and admission churns
/// *main* (a loop of 5× the capacity at 4,000 entries hit 10 % where Belady
/// hits 20 %). At 80 the loop keeps a fixed set (18.4 %); the real traces
/// score as before on average, `orm-night` at 4,323 a point lower
/// (ARCHITECTURE, `cache-store-memory`).
const MIN_SAMPLE_PER_ENTRY: usize = 80;

pub(super) struct Sketch {
    /// Empty until [`start`](Self::start): a shard that never fills pays
    /// nothing.
    table: Vec<u64>,
    width: usize,
    /// Blocks in the table, less one (their number is a power of two).
    block_mask: usize,
    additions: usize,
    sample: usize,
}

/// A different 64-bit mix of `hash` per row.
#[inline]
fn row_hash(hash: u64, row: usize) -> u64 {
    const SEEDS: [u64; ROWS] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0x85EB_CA77_C2B2_AE63,
    ];
    let x = (hash ^ (hash >> 29)).wrapping_mul(SEEDS[row]);
    x ^ (x >> 32)
}

impl Sketch {
    /// A sketch for a shard of about `entries` keys.
    pub(super) fn new(entries: usize) -> Self {
        let width = entries.max(MIN_WIDTH).next_power_of_two();
        Sketch {
            table: Vec::new(),
            width,
            block_mask: width / BLOCK - 1,
            additions: 0,
            sample: (width * SAMPLE_PER_WORD).max(entries * MIN_SAMPLE_PER_ENTRY),
        }
    }

    /// The first word of `hash`'s block, and in it the word offset and bit
    /// shift of each of its counters: one block chosen by the key, in it one
    /// word of each pair for each row, and in each word a counter chosen by a
    /// different mix of the key.
    #[inline]
    fn slots(&self, hash: u64) -> (usize, [(usize, u32); ROWS]) {
        let block = (row_hash(hash, 0) as usize & self.block_mask) * BLOCK;
        let slots = std::array::from_fn(|row| {
            let h = row_hash(hash, row);
            (row * 2 + ((h >> 59) & 1) as usize, ((h >> 60) as u32) * 4)
        });
        (block, slots)
    }

    /// Allocates the table: from now on wants are counted.
    pub(super) fn start(&mut self) {
        if self.table.is_empty() {
            self.table = vec![0; self.width];
        }
    }

    /// Counts one more want of `hash` (nothing before [`start`](Self::start)). Only the counters at the key's
    /// current minimum grow (a conservative update): keys sharing a counter
    /// inflate each other's estimates far less.
    pub(super) fn increment(&mut self, hash: u64) {
        let (start, slots) = self.slots(hash);
        // Empty before `start`: nothing counted.
        let Some(block) = line_mut(&mut self.table, start) else {
            return;
        };
        let count = |block: &[u64; BLOCK], (w, shift): (usize, u32)| {
            (block[w & (BLOCK - 1)] >> shift) & MAX
        };
        let min = slots.iter().map(|&s| count(block, s)).min().unwrap_or(MAX);
        if min == MAX {
            return;
        }
        for (w, shift) in slots {
            if count(block, (w, shift)) == min {
                block[w & (BLOCK - 1)] += 1 << shift;
            }
        }
        self.additions += 1;
        if self.additions >= self.sample {
            self.halve();
        }
    }

    /// The estimated wants of `hash` (never below the truth, up to 15).
    pub(super) fn estimate(&self, hash: u64) -> u64 {
        let (start, slots) = self.slots(hash);
        let Some(block) = line(&self.table, start) else {
            return 0;
        };
        slots
            .iter()
            .map(|&(w, shift)| (block[w & (BLOCK - 1)] >> shift) & MAX)
            .min()
            .unwrap_or(0)
    }

    /// Ages every counter by half.
    fn halve(&mut self) {
        for w in &mut self.table {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.additions /= 2;
    }

    pub(super) fn clear(&mut self) {
        self.table.iter_mut().for_each(|w| *w = 0);
        self.additions = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ages() {
        let mut s = Sketch::new(1024);
        s.increment(42);
        assert_eq!(s.estimate(42), 0, "nothing counted before start");
        s.start();
        for _ in 0..5 {
            s.increment(42);
        }
        s.increment(7);
        assert!(s.estimate(42) >= 5);
        assert!(s.estimate(7) >= 1 && s.estimate(7) < 5);
        assert_eq!(s.estimate(12_345), 0);
        // Saturates at 15.
        for _ in 0..100 {
            s.increment(42);
        }
        assert_eq!(s.estimate(42), 15);
        s.halve();
        assert_eq!(s.estimate(42), 7);
    }

    #[test]
    fn halves_after_its_sample() {
        let mut s = Sketch::new(1024);
        s.start();
        for _ in 0..15 {
            s.increment(1);
        }
        assert_eq!(s.estimate(1), 15);
        assert_eq!(s.sample, 1024 * MIN_SAMPLE_PER_ENTRY);
        for k in 0..s.sample as u64 {
            s.increment(1_000_000 + k);
        }
        assert!(s.estimate(1) < 15, "aged once the sample was reached");
    }
}
