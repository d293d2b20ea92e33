//! Bloom filter properties: no false negatives, false-positive rates within a
//! binomial bound of the target, validation, serialization, concurrency.

use std::sync::Arc;

use cache_bloom::{AtomicBloomFilter, BloomError, BloomFilter, Params};
use proptest::prelude::*;

proptest! {
    #[test]
    fn no_false_negatives(
        items in proptest::collection::hash_set(any::<u64>(), 1..2_000),
        fp in prop_oneof![Just(0.5), Just(0.1), Just(0.01), Just(0.0001)],
        seed in any::<u64>(),
    ) {
        let mut f = BloomFilter::with_params(Params::optimal(items.len() as u64, fp, seed).expect("valid"))
            .expect("valid");
        for i in &items {
            f.insert(i);
        }
        for i in &items {
            prop_assert!(f.contains(i));
        }
    }

    #[test]
    fn strings_have_no_false_negatives_in_the_atomic_variant(
        items in proptest::collection::vec(".{0,24}", 1..500),
    ) {
        let f = AtomicBloomFilter::with_rate(items.len() as u64, 0.01).expect("valid");
        for i in &items {
            f.insert(i.as_str());
        }
        prop_assert!(items.iter().all(|i| f.contains(i.as_str())));
    }
}

/// Inserts `n` items, queries `queries` never-inserted ones; returns (measured,
/// predicted) false-positive rates.
fn measure(n: u64, p: f64, queries: u64) -> (f64, f64) {
    let mut f = BloomFilter::with_rate(n, p).expect("valid");
    for i in 0..n {
        f.insert(&i);
    }
    let fps = (n..n + queries).filter(|i| f.contains(i)).count();
    let params = f.params();
    let k = f64::from(params.hashes());
    let predicted = (1.0 - (-k * n as f64 / params.bits() as f64).exp()).powf(k);
    (fps as f64 / queries as f64, predicted)
}

#[test]
fn false_positive_rates_are_within_a_binomial_bound_of_the_target() {
    for (n, p, queries) in [
        (1_000_000, 0.01, 200_000),
        (100_000, 0.1, 200_000),
        (100_000, 0.001, 400_000),
        (50_000, 0.0001, 1_000_000),
    ] {
        let (measured, predicted) = measure(n, p, queries);
        // The sized filter's own prediction is at most the target (up to rounding of k).
        assert!(predicted <= p * 1.05, "n={n} p={p}: predicted {predicted}");
        // Measured: within 4.5 standard deviations of a binomial proportion at p.
        let sd = (p * (1.0 - p) / queries as f64).sqrt();
        assert!(
            measured <= p + 4.5 * sd,
            "n={n} p={p}: measured {measured} over target + 4.5 sd ({sd})"
        );
        assert!(
            (measured - predicted).abs()
                <= 4.5 * (predicted * (1.0 - predicted) / queries as f64).sqrt() + 1e-5,
            "n={n} p={p}: measured {measured} vs predicted {predicted}"
        );
    }
}

#[test]
fn false_positives_fall_as_the_filter_grows() {
    let n = 20_000;
    let mut last = f64::MAX;
    for p in [0.2, 0.05, 0.01, 0.002] {
        let (measured, _) = measure(n, p, 200_000);
        assert!(measured < last, "p={p}: {measured} !< {last}");
        last = measured;
    }
}

#[test]
fn invalid_parameters_are_rejected() {
    assert_eq!(BloomFilter::with_rate(0, 0.01), Err(BloomError::ZeroItems));
    for p in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
        assert!(
            matches!(
                BloomFilter::with_rate(10, p),
                Err(BloomError::InvalidRate(_))
            ),
            "{p}"
        );
    }
    assert!(matches!(
        BloomFilter::with_rate(u64::MAX / 2, 1e-9),
        Err(BloomError::TooLarge { .. })
    ));
    assert!(Params::new(0, 3, 0).is_err());
    assert!(Params::new(64, 0, 0).is_err());
    assert!(Params::new(64, 65, 0).is_err());
}

#[test]
fn sizing_is_optimal() {
    let p = Params::optimal(1_000, 0.01, 0).expect("valid");
    // m = ceil(1000 · ln(100) / ln(2)²) = 9586, k = round(9.586 · ln 2) = 7.
    assert_eq!((p.bits(), p.hashes()), (9_586, 7));
}

#[test]
fn bytes_round_trip_and_corruption_is_an_error() {
    let mut f =
        BloomFilter::with_params(Params::optimal(1_000, 0.01, 99).expect("valid")).expect("valid");
    for i in 0..1_000u32 {
        f.insert(&i);
    }
    let bytes = f.to_bytes().expect("encodes");
    let g = BloomFilter::from_bytes(&bytes).expect("decodes");
    assert_eq!(g, f);
    assert!((0..1_000u32).all(|i| g.contains(&i)));

    // Truncated, trailing garbage, wrong version: all refused.
    assert!(matches!(
        BloomFilter::from_bytes(&bytes[..bytes.len() - 3]),
        Err(BloomError::Corrupt(_))
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        BloomFilter::from_bytes(&longer),
        Err(BloomError::Corrupt(_))
    ));
    let mut version = bytes.clone();
    version[0] = 9;
    assert!(matches!(
        BloomFilter::from_bytes(&version),
        Err(BloomError::Corrupt(_))
    ));

    // Inconsistent metadata: a hash count of 0, or a bit count that does not match the words.
    #[derive(serde::Serialize)]
    struct Wire {
        version: u8,
        bits: u64,
        hashes: u32,
        seed: u64,
        words: Vec<u64>,
    }
    let forge = |bits, hashes, words: Vec<u64>| {
        postcard::to_allocvec(&Wire {
            version: 1,
            bits,
            hashes,
            seed: 0,
            words,
        })
        .expect("encodes")
    };
    assert!(BloomFilter::from_bytes(&forge(128, 3, vec![0, 0])).is_ok());
    assert!(BloomFilter::from_bytes(&forge(128, 0, vec![0, 0])).is_err());
    assert!(BloomFilter::from_bytes(&forge(128, 3, vec![0])).is_err());
    assert!(
        BloomFilter::from_bytes(&forge(100, 3, vec![0, 1 << 40])).is_err(),
        "bit 104 of 100"
    );
}

#[test]
fn union_adds_and_refuses_mismatches() {
    let params = Params::optimal(100, 0.01, 1).expect("valid");
    let mut a = BloomFilter::with_params(params).expect("valid");
    let mut b = BloomFilter::with_params(params).expect("valid");
    a.insert("a");
    b.insert("b");
    a.union(&b).expect("same shape");
    assert!(a.contains("a") && a.contains("b"));
    let other_seed =
        BloomFilter::with_params(Params::optimal(100, 0.01, 2).expect("valid")).expect("valid");
    assert_eq!(a.union(&other_seed), Err(BloomError::Mismatch));
    let other_size = BloomFilter::with_rate(1_000, 0.01).expect("valid");
    assert_eq!(a.union(&other_size), Err(BloomError::Mismatch));
}

#[test]
fn fill_and_estimates_track_inserts() {
    let mut f = BloomFilter::with_rate(10_000, 0.01).expect("valid");
    assert_eq!(f.fill_ratio(), 0.0);
    for i in 0..5_000u64 {
        f.insert(&i);
    }
    let est = f.estimated_items();
    assert!((est - 5_000.0).abs() < 250.0, "estimated {est}");
    assert!(f.estimated_fp_rate() < 0.01);
    for i in 5_000..10_000u64 {
        f.insert(&i);
    }
    assert!(
        (f.fill_ratio() - 0.5).abs() < 0.02,
        "optimal filters are half full at capacity"
    );
    f.clear();
    assert_eq!(f.fill_ratio(), 0.0);
    assert!(!f.contains(&1u64));
}

#[test]
fn concurrent_inserts_equal_sequential_inserts() {
    let params = Params::optimal(40_000, 0.01, 5).expect("valid");
    let shared = Arc::new(AtomicBloomFilter::with_params(params).expect("valid"));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let f = Arc::clone(&shared);
            std::thread::spawn(move || {
                for i in (t * 10_000)..((t + 1) * 10_000) {
                    f.insert(&i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no panic");
    }
    let mut sequential = BloomFilter::with_params(params).expect("valid");
    for i in 0..40_000u64 {
        sequential.insert(&i);
    }
    assert_eq!(shared.snapshot(), sequential);
    assert_eq!(
        AtomicBloomFilter::from(sequential.clone()).snapshot(),
        sequential
    );
}

#[test]
fn the_hash_is_stable_and_seeded() {
    // Two filters built independently are identical; another seed differs.
    let build = |seed| {
        let mut f = BloomFilter::with_params(Params::optimal(1_000, 0.01, seed).expect("valid"))
            .expect("valid");
        for i in 0..500u64 {
            f.insert(&format!("user:{i}"));
        }
        f
    };
    assert_eq!(build(3), build(3));
    assert_ne!(build(3), build(4));
    // Pin the encoding: these bytes must not change between releases, or
    // filters saved by an older version would silently stop matching.
    let mut f = BloomFilter::with_params(Params::new(128, 3, 7).expect("valid")).expect("valid");
    f.insert("hello");
    f.insert(&42u64);
    assert_eq!(f.to_bytes().expect("encodes"), PINNED);
}

// Recorded from this implementation (XXH3, seed 7, double hashing, postcard varints).
const PINNED: &[u8] = &[
    1, 128, 1, 3, 7, 2, 128, 128, 192, 128, 128, 132, 128, 130, 128, 1, 128, 132, 128, 128, 8,
];
