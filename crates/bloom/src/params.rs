//! Sizing and hashing shared by both filter variants.

use std::fmt;
use std::hash::{Hash, Hasher};

use xxhash_rust::xxh3::Xxh3;

/// The largest filter accepted: 2³⁸ bits (32 GiB).
pub const MAX_BITS: u64 = 1 << 38;
/// The most hash functions accepted.
pub const MAX_HASHES: u32 = 64;

/// Why a filter could not be made, loaded or merged.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BloomError {
    /// Expected items must be at least 1.
    ZeroItems,
    /// The false-positive rate must be strictly between 0 and 1.
    InvalidRate(f64),
    /// The filter would be larger than [`MAX_BITS`].
    TooLarge {
        /// Bits the parameters call for.
        bits: u64,
    },
    /// Two filters differ in size, hash count or seed.
    Mismatch,
    /// Serialized bytes are malformed or inconsistent.
    Corrupt(String),
}

impl fmt::Display for BloomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BloomError::ZeroItems => f.write_str("a bloom filter needs at least 1 expected item"),
            BloomError::InvalidRate(p) => {
                write!(
                    f,
                    "false-positive rate {p} must be strictly between 0 and 1"
                )
            }
            BloomError::TooLarge { bits } => {
                write!(
                    f,
                    "a filter of {bits} bits exceeds the maximum of {MAX_BITS}"
                )
            }
            BloomError::Mismatch => f.write_str(
                "filters differ in bit count, hash count or seed and cannot be combined",
            ),
            BloomError::Corrupt(why) => write!(f, "serialized bloom filter is invalid: {why}"),
        }
    }
}

impl std::error::Error for BloomError {}

/// The shape of a filter: bit count, hash count and hash seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Params {
    pub(crate) bits: u64,
    pub(crate) hashes: u32,
    pub(crate) seed: u64,
}

impl Params {
    /// Optimal parameters for `items` at false-positive rate `fp`:
    /// `m = ⌈−n·ln p / (ln 2)²⌉` bits and `k = round(m/n · ln 2)` hashes.
    pub fn optimal(items: u64, fp: f64, seed: u64) -> Result<Self, BloomError> {
        if items == 0 {
            return Err(BloomError::ZeroItems);
        }
        if !(fp > 0.0 && fp < 1.0) {
            return Err(BloomError::InvalidRate(fp));
        }
        let ln2 = std::f64::consts::LN_2;
        let m = (-(items as f64) * fp.ln() / (ln2 * ln2)).ceil().max(64.0);
        if m > MAX_BITS as f64 {
            return Err(BloomError::TooLarge {
                bits: if m >= u64::MAX as f64 {
                    u64::MAX
                } else {
                    m as u64
                },
            });
        }
        let bits = m as u64;
        let k = ((bits as f64 / items as f64) * ln2)
            .round()
            .clamp(1.0, f64::from(MAX_HASHES));
        Ok(Params {
            bits,
            hashes: k as u32,
            seed,
        })
    }

    /// Explicit parameters, checked.
    pub fn new(bits: u64, hashes: u32, seed: u64) -> Result<Self, BloomError> {
        if bits == 0 || bits > MAX_BITS {
            return Err(BloomError::Corrupt(format!(
                "bit count {bits} is not in 1..={MAX_BITS}"
            )));
        }
        if hashes == 0 || hashes > MAX_HASHES {
            return Err(BloomError::Corrupt(format!(
                "hash count {hashes} is not in 1..={MAX_HASHES}"
            )));
        }
        Ok(Params { bits, hashes, seed })
    }

    /// Bits in the filter.
    #[must_use]
    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// Hash functions per item.
    #[must_use]
    pub fn hashes(&self) -> u32 {
        self.hashes
    }

    /// The hash seed.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn words(&self) -> usize {
        self.bits.div_ceil(64) as usize
    }

    /// The stable 64-bit hash of an item (XXH3 with the filter's seed, over the
    /// item's `Hash` encoding).
    pub(crate) fn hash<T: Hash + ?Sized>(&self, item: &T) -> u64 {
        let mut h = Xxh3::with_seed(self.seed);
        item.hash(&mut h);
        h.finish()
    }

    /// The `k` bit positions of a hash: `h1 + i·h2 mod m` (double hashing).
    pub(crate) fn positions(&self, hash: u64) -> impl Iterator<Item = u64> + use<> {
        let h1 = hash;
        // Odd, so the probe sequence does not collapse when m is a power of two.
        let h2 = hash.rotate_left(32) | 1;
        let m = self.bits;
        (0..u64::from(self.hashes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
    }

    /// Estimated false-positive rate for a given fill ratio: `fill^k`.
    pub(crate) fn fp_at(&self, fill: f64) -> f64 {
        fill.powi(self.hashes as i32)
    }
}
