//! The shard lock and the invalidation-fence atomics: `parking_lot` and
//! `std` normally, loom's under `--cfg cache_loom`, so the model of fenced
//! fills (`tests/loom_fence.rs`) sees every lock and atomic the protocol
//! uses. Everything else in the crate keeps `std`'s types (loom ignores
//! them: they take no part in the protocol).

#[cfg(not(cache_loom))]
pub(crate) use parking_lot::{RwLock, RwLockWriteGuard};
#[cfg(not(cache_loom))]
pub(crate) use std::sync::atomic::AtomicU64;

#[cfg(cache_loom)]
pub(crate) use loom::sync::atomic::AtomicU64;
#[cfg(cache_loom)]
pub(crate) use model::{RwLock, RwLockWriteGuard};

/// A `SeqCst` fence (loom's in the model): orders a reader's advance of the
/// sequence before its read elsewhere, and an invalidation's change
/// elsewhere before its read of the sequence, so that at least one of the
/// two sees the other (the store-buffering outcome, where neither does, is
/// what the fences rule out). `SeqCst` accesses alone give that order in
/// the language's model, but loom treats them as `AcqRel` and reports the
/// outcome; with the fences the shipped code and the model are the same.
/// On x86 both follow a locked instruction, so they cost next to nothing.
#[inline(always)]
pub(crate) fn fence_seq_cst() {
    #[cfg(cache_loom)]
    loom::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    #[cfg(not(cache_loom))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

#[cfg(cache_loom)]
mod model {
    use loom::sync::RwLockReadGuard;
    pub(crate) use loom::sync::RwLockWriteGuard;

    /// `parking_lot`'s API over loom's lock (no poisoning to handle: a
    /// model that panics has failed already).
    #[derive(Debug)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> Self {
            RwLock(loom::sync::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(|e| e.into_inner())
        }

        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(|e| e.into_inner())
        }

        pub(crate) fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
            self.0.try_write().ok()
        }
    }
}
