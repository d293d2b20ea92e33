//! Failure accounting while closed: consecutive failures, or the failure rate
//! over a count-based or time-based sliding window. Lock-free; exact when calls
//! are sequential, approximate by at most a few calls under heavy contention.

use crate::sync::{AtomicU64, Ordering};

/// What the window says after recording an outcome.
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
}

pub(crate) enum Window {
    Consecutive {
        count: AtomicU64,
    },
    Count {
        /// 0 empty, 1 success, 2 failure.
        slots: Box<[AtomicU64]>,
        cursor: AtomicU64,
    },
    Time {
        bucket_nanos: u64,
        /// Per bucket: epoch + 1 (0 = never used), calls, failures.
        buckets: Box<[[AtomicU64; 3]]>,
    },
}

impl Window {
    pub(crate) fn consecutive() -> Self {
        Window::Consecutive {
            count: AtomicU64::new(0),
        }
    }

    pub(crate) fn count(size: usize) -> Self {
        Window::Count {
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
            cursor: AtomicU64::new(0),
        }
    }

    pub(crate) fn time(bucket_nanos: u64, buckets: usize) -> Self {
        Window::Time {
            bucket_nanos: bucket_nanos.max(1),
            buckets: (0..buckets)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        }
    }

    /// True for the time-based window (the only one that reads the clock).
    pub(crate) fn is_timed(&self) -> bool {
        matches!(self, Window::Time { .. })
    }

    /// Records one outcome at `now` (nanoseconds since the breaker's origin).
    pub(crate) fn record(&self, failure: bool, now: u64) {
        match self {
            Window::Consecutive { count } => {
                if failure {
                    count.fetch_add(1, Ordering::AcqRel);
                } else if count.load(Ordering::Relaxed) != 0 {
                    // Only write when needed: the success path stays read-only.
                    count.store(0, Ordering::Release);
                }
            }
            Window::Count { slots, cursor } => {
                let i = cursor.fetch_add(1, Ordering::AcqRel);
                let slot = &slots[(i % slots.len() as u64) as usize];
                slot.store(if failure { 2 } else { 1 }, Ordering::Release);
            }
            Window::Time {
                bucket_nanos,
                buckets,
            } => {
                let epoch = now / bucket_nanos;
                let b = &buckets[(epoch % buckets.len() as u64) as usize];
                let tag = b[0].load(Ordering::Acquire);
                if tag != epoch + 1
                    && b[0]
                        .compare_exchange(tag, epoch + 1, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    b[1].store(0, Ordering::Release);
                    b[2].store(0, Ordering::Release);
                }
                b[1].fetch_add(1, Ordering::AcqRel);
                if failure {
                    b[2].fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Calls and failures currently in the window (for consecutive: the run).
    pub(crate) fn tally(&self, now: u64) -> Tally {
        match self {
            Window::Consecutive { count } => {
                let n = count.load(Ordering::Acquire);
                Tally {
                    calls: n,
                    failures: n,
                }
            }
            Window::Count { slots, .. } => {
                let (mut calls, mut failures) = (0, 0);
                for s in slots.iter() {
                    match s.load(Ordering::Acquire) {
                        1 => calls += 1,
                        2 => {
                            calls += 1;
                            failures += 1;
                        }
                        _ => {}
                    }
                }
                Tally { calls, failures }
            }
            Window::Time {
                bucket_nanos,
                buckets,
            } => {
                let epoch = now / bucket_nanos;
                let oldest = (epoch + 1).saturating_sub(buckets.len() as u64);
                let (mut calls, mut failures) = (0, 0);
                for b in buckets.iter() {
                    let tag = b[0].load(Ordering::Acquire);
                    // `tag` is epoch + 1; keep buckets whose epoch is in [oldest, epoch].
                    if tag != 0 && (oldest..=epoch).contains(&(tag - 1)) {
                        calls += b[1].load(Ordering::Acquire);
                        failures += b[2].load(Ordering::Acquire);
                    }
                }
                Tally { calls, failures }
            }
        }
    }

    /// Forgets everything (on entering closed state).
    pub(crate) fn reset(&self) {
        match self {
            Window::Consecutive { count } => count.store(0, Ordering::Release),
            Window::Count { slots, cursor } => {
                cursor.store(0, Ordering::Release);
                for s in slots.iter() {
                    s.store(0, Ordering::Release);
                }
            }
            Window::Time { buckets, .. } => {
                for b in buckets.iter() {
                    b[0].store(0, Ordering::Release);
                }
            }
        }
    }
}
