//! Ghosts: which keys eviction decided against recently, remembered as bits
//! rather than keys. Two generations of a small bloom filter: a key is
//! remembered from when it is added until the generation after the one it was
//! added to fills up, so about `cap` to `2 × cap` additions. Every probe of a
//! key falls in one 64-byte block, so a lookup costs one cache line per
//! generation. False positives (about 1 in 4,000 per full generation, measured) are rare enough that a scan almost never
//! passes for a returning key, and the whole ghost costs about 6 bytes per
//! remembered key (an exact ring and table of hashes cost about 40).

use super::{LINE_WORDS, line, line_mut};

/// Bits per remembered key in each generation.
const BITS_PER_KEY: usize = 24;
/// Bits set per key.
const PROBES: usize = 5;
/// Words per block: every probe of a key falls in one cache line.
const BLOCK_WORDS: usize = LINE_WORDS;

/// Probe `i` of a key whose probe bits are `h2`: nine bits of `h2`, a bit of
/// the block's 512, as a word of the block and a mask.
#[inline]
fn probe(h2: u64, i: usize) -> (usize, u64) {
    let bit = (h2 >> (i * 9)) & 511;
    ((bit / 64) as usize & (BLOCK_WORDS - 1), 1u64 << (bit % 64))
}

pub(super) struct Ghost {
    /// Empty until the first key is added: a shard that never evicts pays
    /// nothing.
    current: Vec<u64>,
    previous: Vec<u64>,
    /// Blocks per generation.
    blocks: u64,
    added: usize,
    cap: usize,
}

impl Ghost {
    pub(super) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        let blocks = (cap * BITS_PER_KEY).div_ceil(64 * BLOCK_WORDS);
        Ghost {
            current: Vec::new(),
            previous: Vec::new(),
            blocks: blocks as u64,
            added: 0,
            cap,
        }
    }

    /// The first word of `hash`'s block, and the bits that choose its probes
    /// in it: all in one 64-byte block chosen by the key (a blocked bloom
    /// filter: one cache line per lookup).
    #[inline]
    fn place(&self, hash: u64) -> (usize, u64) {
        // A remix of the key's hash: the table and the shard choice use its
        // low bits already.
        let h1 = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        let h2 = (hash ^ (hash >> 31)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        // Multiply-shift maps the block choice onto 0..blocks without a division.
        let block = ((u128::from(h1) * u128::from(self.blocks)) >> 64) as usize * BLOCK_WORDS;
        (block, h2)
    }

    pub(super) fn add(&mut self, hash: u64) {
        if self.current.is_empty() {
            let words = self.blocks as usize * BLOCK_WORDS;
            self.current = vec![0; words];
            self.previous = vec![0; words];
        }
        if self.added >= self.cap {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.iter_mut().for_each(|w| *w = 0);
            self.added = 0;
        }
        let (start, h2) = self.place(hash);
        if let Some(block) = line_mut(&mut self.current, start) {
            for i in 0..PROBES {
                let (w, m) = probe(h2, i);
                block[w] |= m;
            }
        }
        self.added += 1;
    }

    /// Whether `hash` was added recently (or collides with keys that were).
    pub(super) fn contains(&self, hash: u64) -> bool {
        if self.current.is_empty() {
            return false;
        }
        let (start, h2) = self.place(hash);
        // Probes are worked out one at a time: most keys not remembered are
        // told apart by the first one or two.
        let all = |bitmap: &[u64]| {
            line(bitmap, start).is_some_and(|b| {
                (0..PROBES).all(|i| {
                    let (w, m) = probe(h2, i);
                    b[w] & m != 0
                })
            })
        };
        all(&self.current) || all(&self.previous)
    }

    pub(super) fn clear(&mut self) {
        self.current.iter_mut().for_each(|w| *w = 0);
        self.previous.iter_mut().for_each(|w| *w = 0);
        self.added = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_for_one_to_two_generations() {
        let mut g = Ghost::new(100);
        let key = |i: u64| i.wrapping_mul(0x2545_F491_4F6C_DD1D);
        g.add(key(0));
        assert!(g.contains(key(0)));
        for i in 1..150 {
            g.add(key(i));
        }
        assert!(g.contains(key(0)), "within two generations");
        for i in 150..400 {
            g.add(key(i));
        }
        assert!(!g.contains(key(0)), "forgotten after two");
        let false_positives = (10_000..20_000).filter(|&i| g.contains(key(i))).count();
        assert!(false_positives < 500, "{false_positives} of 10,000");
        g.clear();
        assert!(!g.contains(key(399)));
    }
}
