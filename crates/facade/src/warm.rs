//! Warming: load a known set of hot keys before the service takes traffic.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::{CacheKey, Codec, DecodeKey};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::error::Error;

/// Progress of a warm-up, reported after each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmProgress {
    /// Keys finished (any outcome).
    pub done: usize,
    /// Keys in the warm-up.
    pub total: usize,
    /// Keys that failed so far.
    pub failed: usize,
}

type ProgressFn = Arc<dyn Fn(WarmProgress) + Send + Sync>;

/// How to warm: concurrency and a progress callback.
#[derive(Clone)]
#[must_use]
pub struct WarmOptions {
    concurrency: NonZeroUsize,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for WarmOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmOptions")
            .field("concurrency", &self.concurrency)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Loads at a time by default.
pub const DEFAULT_WARM_CONCURRENCY: NonZeroUsize = NonZeroUsize::new(16).expect("16 > 0");

impl Default for WarmOptions {
    fn default() -> Self {
        WarmOptions {
            concurrency: DEFAULT_WARM_CONCURRENCY,
            progress: None,
        }
    }
}

impl WarmOptions {
    /// 16 loads at a time, no progress callback.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most this many loads at a time (protects the source at startup).
    pub fn concurrency(mut self, n: NonZeroUsize) -> Self {
        self.concurrency = n;
        self
    }

    /// Called after every key (e.g. to drive a progress bar or a log line).
    pub fn on_progress(mut self, f: impl Fn(WarmProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
}

/// What a warm-up did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WarmReport<K> {
    /// Keys in the warm-up (duplicates included).
    pub total: usize,
    /// Keys that already had a fresh value in L1.
    pub already_cached: usize,
    /// Keys that now hold a value (from L2 or the loader).
    pub warmed: usize,
    /// Keys the loader reported as absent (cached negatively).
    pub absent: usize,
    /// Keys whose load failed, with the error.
    pub failed: Vec<(K, Error)>,
    /// Wall time of the warm-up.
    pub elapsed: Duration,
}

impl<K> WarmReport<K> {
    /// No key failed.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

impl<K, V, C> Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    /// Loads `keys` through the normal read path (L1, L2, then `loader`, with
    /// coalescing), at most `options.concurrency` at a time, and reports what
    /// happened. Await it before binding the service's port.
    ///
    /// ```
    /// use resilient_cache::{Cache, WarmOptions};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let users: Cache<u64, String> = Cache::builder("users").build()?;
    /// let report = users
    ///     .warm(1..=100, WarmOptions::new(), |id| async move {
    ///         Ok::<_, std::io::Error>(Some(format!("user {id}")))
    ///     })
    ///     .await;
    /// assert_eq!((report.warmed, report.failed.len()), (100, 0));
    /// assert_eq!(users.get(&42).await?.as_deref(), Some("user 42"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn warm<I, F, Fut, E>(
        &self,
        keys: I,
        options: WarmOptions,
        loader: F,
    ) -> WarmReport<K>
    where
        I: IntoIterator<Item = K>,
        F: Fn(K) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let started = Instant::now();
        let keys: Vec<K> = keys.into_iter().collect();
        let total = keys.len();
        let done = AtomicUsize::new(0);
        let failed_count = AtomicUsize::new(0);
        let mut report = WarmReport {
            total,
            already_cached: 0,
            warmed: 0,
            absent: 0,
            failed: Vec::new(),
            elapsed: Duration::ZERO,
        };
        let now = self.inner.clock.now();
        let outcomes: Vec<_> = futures_util::stream::iter(keys)
            .map(|k| {
                let loader = loader.clone();
                let cached = self
                    .inner
                    .tiered
                    .l1()
                    .peek_sync(&k)
                    .is_some_and(|e| e.is_fresh(now) && !e.is_absent());
                let (done, failed_count, progress) = (&done, &failed_count, &options.progress);
                async move {
                    let result = if cached {
                        Ok(None)
                    } else {
                        self.try_get_or_load(k.clone(), loader).await
                    };
                    if result.is_err() {
                        failed_count.fetch_add(1, Ordering::Relaxed);
                    }
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Some(progress) = progress {
                        progress(WarmProgress {
                            done: finished,
                            total,
                            failed: failed_count.load(Ordering::Relaxed),
                        });
                    }
                    (k, cached, result)
                }
            })
            .buffer_unordered(options.concurrency.get())
            .collect()
            .await;
        for (k, cached, result) in outcomes {
            match (cached, result) {
                (true, _) => report.already_cached += 1,
                (false, Ok(Some(_))) => report.warmed += 1,
                (false, Ok(None)) => report.absent += 1,
                (false, Err(e)) => report.failed.push((k, e)),
            }
        }
        report.elapsed = started.elapsed();
        report
    }

    /// [`warm`](Self::warm) with the key set from `hot_keys` (e.g. "the 10,000 most
    /// requested ids yesterday").
    ///
    /// # Errors
    /// [`Error::Load`] when `hot_keys` fails; nothing is loaded then.
    pub async fn warm_from<L, LFut, LE, F, Fut, E>(
        &self,
        hot_keys: L,
        options: WarmOptions,
        loader: F,
    ) -> Result<WarmReport<K>, Error>
    where
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<Vec<K>, LE>>,
        LE: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
        F: Fn(K) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let keys = hot_keys()
            .await
            .map_err(|e| Error::Load(Arc::from(e.into())))?;
        Ok(self.warm(keys, options, loader).await)
    }
}
