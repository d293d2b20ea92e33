//! [`BloomFilter`] (exclusive access) and [`AtomicBloomFilter`] (shared, lock-free).

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::params::{BloomError, Params};

/// Format version of the serialized form.
const WIRE_VERSION: u8 = 1;

/// A bloom filter: "definitely not present" or "possibly present".
///
/// Never a false negative: an inserted item is always reported as possibly present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BloomFilter {
    params: Params,
    words: Vec<u64>,
}

impl BloomFilter {
    /// A filter sized for `items` at false-positive rate `fp`, seed 0.
    pub fn with_rate(items: u64, fp: f64) -> Result<Self, BloomError> {
        Self::with_params(Params::optimal(items, fp, 0)?)
    }

    /// A filter with the given parameters (see [`Params::optimal`]).
    pub fn with_params(params: Params) -> Result<Self, BloomError> {
        let params = Params::new(params.bits, params.hashes, params.seed)?;
        Ok(BloomFilter {
            params,
            words: vec![0; params.words()],
        })
    }

    /// The filter's parameters.
    #[must_use]
    pub fn params(&self) -> Params {
        self.params
    }

    /// Adds an item; returns `true` if it was possibly present already.
    pub fn insert<T: Hash + ?Sized>(&mut self, item: &T) -> bool {
        let mut present = true;
        for bit in self.params.positions(self.params.hash(item)) {
            let (w, mask) = (bit as usize / 64, 1u64 << (bit % 64));
            present &= self.words[w] & mask != 0;
            self.words[w] |= mask;
        }
        present
    }

    /// `false`: definitely never inserted. `true`: possibly inserted.
    #[must_use]
    pub fn contains<T: Hash + ?Sized>(&self, item: &T) -> bool {
        self.params
            .positions(self.params.hash(item))
            .all(|bit| self.words[bit as usize / 64] & (1u64 << (bit % 64)) != 0)
    }

    /// Removes every item.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }

    /// Fraction of bits set.
    #[must_use]
    pub fn fill_ratio(&self) -> f64 {
        ones(self.words.iter().copied()) as f64 / self.params.bits as f64
    }

    /// The false-positive rate at the current fill: `fill^k`.
    #[must_use]
    pub fn estimated_fp_rate(&self) -> f64 {
        self.params.fp_at(self.fill_ratio())
    }

    /// Estimated distinct items inserted: `−m/k · ln(1 − fill)`.
    #[must_use]
    pub fn estimated_items(&self) -> f64 {
        let fill = self.fill_ratio();
        -(self.params.bits as f64) / f64::from(self.params.hashes) * (1.0 - fill).ln()
    }

    /// Adds every item of `other` (same bits, hashes and seed, or [`BloomError::Mismatch`]).
    pub fn union(&mut self, other: &BloomFilter) -> Result<(), BloomError> {
        if self.params != other.params {
            return Err(BloomError::Mismatch);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
        Ok(())
    }

    /// The filter as bytes (postcard), for storage or shipping.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BloomError> {
        postcard::to_allocvec(self).map_err(|e| BloomError::Corrupt(e.to_string()))
    }

    /// Loads a filter from [`to_bytes`](Self::to_bytes) output, validating it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BloomError> {
        let (filter, rest) = postcard::take_from_bytes::<BloomFilter>(bytes)
            .map_err(|e| BloomError::Corrupt(e.to_string()))?;
        if !rest.is_empty() {
            return Err(BloomError::Corrupt(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        Ok(filter)
    }
}

fn ones(words: impl Iterator<Item = u64>) -> u64 {
    words.map(|w| u64::from(w.count_ones())).sum()
}

/// The serialized form; turned back into a filter only after validation.
#[derive(Serialize, Deserialize)]
struct Wire {
    version: u8,
    bits: u64,
    hashes: u32,
    seed: u64,
    words: Vec<u64>,
}

impl Serialize for BloomFilter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            version: WIRE_VERSION,
            bits: self.params.bits,
            hashes: self.params.hashes,
            seed: self.params.seed,
            words: self.words.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for BloomFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        BloomFilter::try_from(w).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<Wire> for BloomFilter {
    type Error = BloomError;

    fn try_from(w: Wire) -> Result<Self, BloomError> {
        if w.version != WIRE_VERSION {
            return Err(BloomError::Corrupt(format!(
                "unknown format version {}",
                w.version
            )));
        }
        let params = Params::new(w.bits, w.hashes, w.seed)?;
        if w.words.len() != params.words() {
            return Err(BloomError::Corrupt(format!(
                "{} words for {} bits (expected {})",
                w.words.len(),
                w.bits,
                params.words()
            )));
        }
        let spare = params.words() as u64 * 64 - params.bits;
        if spare > 0 && w.words.last().is_some_and(|last| last >> (64 - spare) != 0) {
            return Err(BloomError::Corrupt(
                "bits set beyond the filter's size".into(),
            ));
        }
        Ok(BloomFilter {
            params,
            words: w.words,
        })
    }
}

/// A bloom filter that inserts through `&self` (atomic `fetch_or`), for a shared
/// hot path. Lock-free; concurrent inserts give exactly the bits sequential
/// inserts would.
#[derive(Debug)]
pub struct AtomicBloomFilter {
    params: Params,
    words: Box<[AtomicU64]>,
}

impl AtomicBloomFilter {
    /// A filter sized for `items` at false-positive rate `fp`, seed 0.
    pub fn with_rate(items: u64, fp: f64) -> Result<Self, BloomError> {
        Self::with_params(Params::optimal(items, fp, 0)?)
    }

    /// A filter with the given parameters.
    pub fn with_params(params: Params) -> Result<Self, BloomError> {
        BloomFilter::with_params(params).map(Self::from)
    }

    /// The filter's parameters.
    #[must_use]
    pub fn params(&self) -> Params {
        self.params
    }

    /// Adds an item; returns `true` if it was possibly present already.
    pub fn insert<T: Hash + ?Sized>(&self, item: &T) -> bool {
        let mut present = true;
        for bit in self.params.positions(self.params.hash(item)) {
            let mask = 1u64 << (bit % 64);
            let before = self.words[bit as usize / 64].fetch_or(mask, Ordering::AcqRel);
            present &= before & mask != 0;
        }
        present
    }

    /// `false`: definitely never inserted. `true`: possibly inserted.
    #[must_use]
    pub fn contains<T: Hash + ?Sized>(&self, item: &T) -> bool {
        self.params.positions(self.params.hash(item)).all(|bit| {
            self.words[bit as usize / 64].load(Ordering::Acquire) & (1u64 << (bit % 64)) != 0
        })
    }

    /// Removes every item (not atomic as a whole with concurrent inserts).
    pub fn clear(&self) {
        for w in self.words.iter() {
            w.store(0, Ordering::Release);
        }
    }

    /// Fraction of bits set.
    #[must_use]
    pub fn fill_ratio(&self) -> f64 {
        ones(self.words.iter().map(|w| w.load(Ordering::Acquire))) as f64 / self.params.bits as f64
    }

    /// The false-positive rate at the current fill.
    #[must_use]
    pub fn estimated_fp_rate(&self) -> f64 {
        self.params.fp_at(self.fill_ratio())
    }

    /// A plain copy (for serialization or union).
    #[must_use]
    pub fn snapshot(&self) -> BloomFilter {
        BloomFilter {
            params: self.params,
            words: self
                .words
                .iter()
                .map(|w| w.load(Ordering::Acquire))
                .collect(),
        }
    }
}

impl From<BloomFilter> for AtomicBloomFilter {
    fn from(f: BloomFilter) -> Self {
        AtomicBloomFilter {
            params: f.params,
            words: f.words.into_iter().map(AtomicU64::new).collect(),
        }
    }
}
