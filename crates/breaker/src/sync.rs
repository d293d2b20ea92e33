//! The synchronization types the crate uses, from `std` normally and from `loom`
//! under `--cfg cache_loom`, so the model checker sees every lock and atomic.

#[cfg(cache_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(cache_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(cache_loom)]
use loom::sync::{Mutex as Inner, MutexGuard};
#[cfg(not(cache_loom))]
use std::sync::{Mutex as Inner, MutexGuard};

/// A mutex that ignores poisoning: every critical section in this crate leaves
/// the state consistent before it can panic, so a poisoned lock is still valid.
#[derive(Debug)]
pub(crate) struct Mutex<T>(Inner<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(Inner::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
