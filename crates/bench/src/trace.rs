//! Key traces: a seeded PRNG, a Zipf sampler and the hit-ratio traces.

/// SplitMix64: small, fast and reproducible (every run sees the same traces).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over ranks `0..n` (rank 0 the most popular), by inverse CDF.
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for rank in 1..=n {
            sum += 1.0 / (rank as f64).powf(s);
            cdf.push(sum);
        }
        for p in &mut cdf {
            *p /= sum;
        }
        Zipf { cdf }
    }

    pub(crate) fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        self.cdf.partition_point(|&p| p < u) as u64
    }

    /// The probability mass of the `c` most popular ranks: the hit ratio of an
    /// oracle that always holds exactly them.
    pub(crate) fn top_mass(&self, c: usize) -> f64 {
        match c {
            0 => 0.0,
            c => self.cdf[(c - 1).min(self.cdf.len() - 1)],
        }
    }
}

/// `len` Zipf draws.
pub(crate) fn zipf_keys(zipf: &Zipf, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| zipf.sample(&mut rng)).collect()
}

/// Scan keys are never drawn by the Zipf part.
pub(crate) const SCAN_BASE: u64 = 1 << 40;

/// `accesses` Zipf draws, with a one-pass scan of `scan_len` never-seen keys
/// inserted after every `scan_every` Zipf accesses (`scan_every == 0`: no scans).
pub(crate) fn with_scans(zipf_part: &[u64], scan_every: usize, scan_len: usize) -> Vec<u64> {
    if scan_every == 0 {
        return zipf_part.to_vec();
    }
    let scans = zipf_part.len() / scan_every;
    let mut out = Vec::with_capacity(zipf_part.len() + scans * scan_len);
    let mut next_scan = SCAN_BASE;
    for (i, &k) in zipf_part.iter().enumerate() {
        out.push(k);
        if (i + 1) % scan_every == 0 {
            out.extend(next_scan..next_scan + scan_len as u64);
            next_scan += scan_len as u64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_puts_rank_zero_first() {
        let z = Zipf::new(1000, 1.0);
        let keys = zipf_keys(&z, 20_000, 1);
        let zeros = keys.iter().filter(|&&k| k == 0).count() as f64 / 20_000.0;
        let expected = z.top_mass(1);
        assert!((zeros - expected).abs() < 0.02, "{zeros} vs {expected}");
        assert!(keys.iter().all(|&k| k < 1000));
        assert!((z.top_mass(1000) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn scans_are_inserted_and_never_repeat() {
        let t = with_scans(&[1, 2, 3, 4], 2, 3);
        assert_eq!(
            t,
            vec![
                1,
                2,
                SCAN_BASE,
                SCAN_BASE + 1,
                SCAN_BASE + 2,
                3,
                4,
                SCAN_BASE + 3,
                SCAN_BASE + 4,
                SCAN_BASE + 5
            ]
        );
    }
}
