//! [`Entry`]: a cached value (or an explicit *absent* marker) with its lifetimes and tags.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::InvalidInput;

/// The longest tag accepted, in bytes.
pub const MAX_TAG_LEN: usize = 256;

/// A cached value with its metadata.
///
/// - The value is either present or an explicit *absent* marker: negative caching
///   remembers that the source has nothing for a key, so repeated look-ups of
///   non-existent keys do not reach the source (cache penetration).
/// - `fresh_until` is the logical expiry: until then the value is served as is.
/// - `stale_until` is the physical expiry (`>= fresh_until`): between the two the
///   entry is *stale*; it may still be served when the source fails (fail-safe).
///   A store drops the entry at `stale_until`; in Redis it is the key's TTL.
/// - `tags` group entries for bulk invalidation.
///
/// Cloning is cheap when `V` is: tags are shared, never copied.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{Entry, Timestamp};
///
/// let now = Timestamp::from_millis(10_000);
/// let e = Entry::new("v", now, Duration::from_secs(60))
///     .with_stale_window(Duration::from_secs(300))
///     .with_tags(["user:7"])?;
/// assert!(e.is_fresh(now));
/// let later = now.saturating_add(Duration::from_secs(120));
/// assert!(!e.is_fresh(later) && !e.is_expired(later)); // stale but usable
/// assert!(e.tags().contains("user:7"));
/// # Ok::<(), cache_core::InvalidInput>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<V> {
    value: Option<V>,
    created_at: Timestamp,
    fresh_until: Timestamp,
    stale_until: Timestamp,
    tags: Tags,
}

impl<V> Entry<V> {
    /// A present value, fresh for `ttl` from `now`, with no stale window.
    #[must_use]
    pub fn new(value: V, now: Timestamp, ttl: Duration) -> Self {
        Self::from_parts(
            Some(value),
            now,
            now.saturating_add(ttl),
            None,
            Tags::none(),
        )
    }

    /// An *absent* marker (negative cache entry), fresh for `ttl` from `now`.
    #[must_use]
    pub fn absent(now: Timestamp, ttl: Duration) -> Self {
        Self::from_parts(None, now, now.saturating_add(ttl), None, Tags::none())
    }

    /// Builds an entry from its parts. `stale_until` defaults to `fresh_until` and is
    /// raised to it when given earlier, so `stale_until >= fresh_until` always holds.
    #[must_use]
    pub fn from_parts(
        value: Option<V>,
        created_at: Timestamp,
        fresh_until: Timestamp,
        stale_until: Option<Timestamp>,
        tags: Tags,
    ) -> Self {
        let stale_until = stale_until.unwrap_or(fresh_until).max(fresh_until);
        Entry {
            value,
            created_at,
            fresh_until,
            stale_until,
            tags,
        }
    }

    /// Keeps the entry for `window` after it stops being fresh, so it can be served
    /// stale when the source fails.
    #[must_use]
    pub fn with_stale_window(mut self, window: Duration) -> Self {
        self.stale_until = self.fresh_until.saturating_add(window);
        self
    }

    /// Attaches tags (replacing any). Fails on an invalid tag.
    pub fn with_tags<I, T>(mut self, tags: I) -> Result<Self, InvalidInput>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = Tags::new(tags)?;
        Ok(self)
    }

    /// Attaches already validated tags (replacing any).
    #[must_use]
    pub fn with_tag_set(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// The value, or `None` for an absent marker.
    #[must_use]
    pub fn value(&self) -> Option<&V> {
        self.value.as_ref()
    }

    /// Takes the value out, or `None` for an absent marker.
    #[must_use]
    pub fn into_value(self) -> Option<V> {
        self.value
    }

    /// True for a negative-cache (*absent*) entry.
    #[must_use]
    pub fn is_absent(&self) -> bool {
        self.value.is_none()
    }

    /// When the entry was made.
    #[must_use]
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The logical expiry.
    #[must_use]
    pub fn fresh_until(&self) -> Timestamp {
        self.fresh_until
    }

    /// The physical expiry.
    #[must_use]
    pub fn stale_until(&self) -> Timestamp {
        self.stale_until
    }

    /// The entry's tags.
    #[must_use]
    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    /// True while `now < fresh_until`.
    #[must_use]
    pub fn is_fresh(&self, now: Timestamp) -> bool {
        now < self.fresh_until
    }

    /// True once `now >= stale_until`: the entry must not be served at all.
    #[must_use]
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.stale_until
    }

    /// Time left before the entry stops being fresh (zero if it is not).
    #[must_use]
    pub fn fresh_ttl(&self, now: Timestamp) -> Duration {
        self.fresh_until.saturating_duration_since(now)
    }

    /// Time left before the entry expires physically (zero if it has).
    #[must_use]
    pub fn physical_ttl(&self, now: Timestamp) -> Duration {
        self.stale_until.saturating_duration_since(now)
    }

    /// The fresh lifetime the entry was made with (`fresh_until - created_at`).
    #[must_use]
    pub fn original_ttl(&self) -> Duration {
        self.fresh_until.saturating_duration_since(self.created_at)
    }

    /// Caps the physical expiry (and the fresh one, if later) at `limit`.
    #[must_use]
    pub fn capped_at(mut self, limit: Timestamp) -> Self {
        self.stale_until = self.stale_until.min(limit);
        self.fresh_until = self.fresh_until.min(limit);
        self
    }

    /// Transforms the value, keeping the metadata.
    pub fn map<U>(self, f: impl FnOnce(V) -> U) -> Entry<U> {
        Entry {
            value: self.value.map(f),
            created_at: self.created_at,
            fresh_until: self.fresh_until,
            stale_until: self.stale_until,
            tags: self.tags,
        }
    }
}

/// A validated, immutable, cheaply cloned set of tags.
///
/// An empty set allocates nothing; a non-empty one is shared behind an `Arc`.
/// One pointer wide (the slice's length lives behind it), so an [`Entry`] without
/// tags stays small.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tags(Option<Arc<Box<[Box<str>]>>>);

impl Tags {
    /// No tags.
    #[must_use]
    pub const fn none() -> Self {
        Tags(None)
    }

    /// Validates and collects tags (duplicates are dropped, order kept).
    ///
    /// A tag is 1 to [`MAX_TAG_LEN`] bytes with no whitespace or control characters.
    pub fn new<I, T>(tags: I) -> Result<Self, InvalidInput>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let mut out: Vec<Box<str>> = Vec::new();
        for tag in tags {
            let tag: String = tag.into();
            validate_tag(&tag)?;
            if !out.iter().any(|t| **t == *tag) {
                out.push(tag.into_boxed_str());
            }
        }
        if out.is_empty() {
            Ok(Tags(None))
        } else {
            Ok(Tags(Some(Arc::new(out.into_boxed_slice()))))
        }
    }

    /// True when there are no tags.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Number of tags.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |t| t.len())
    }

    /// True if `tag` is in the set.
    #[must_use]
    pub fn contains(&self, tag: &str) -> bool {
        self.iter().any(|t| t == tag)
    }

    /// The tags, in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        let tags: &[Box<str>] = self.0.as_deref().map_or(&[], |t| t);
        tags.iter().map(|t| &**t)
    }
}

/// Checks the tag rule: 1 to [`MAX_TAG_LEN`] bytes, no whitespace or control characters.
pub fn validate_tag(tag: &str) -> Result<(), InvalidInput> {
    let reason = if tag.is_empty() {
        Some("a tag must not be empty")
    } else if tag.len() > MAX_TAG_LEN {
        Some("a tag must be at most 256 bytes")
    } else if tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("a tag must not contain whitespace or control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InvalidInput::InvalidTag {
            tag: tag.chars().take(64).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn fresh_stale_expired_boundaries() {
        let e = Entry::new(1, ts(1000), Duration::from_millis(100))
            .with_stale_window(Duration::from_millis(50));
        assert!(e.is_fresh(ts(1099)));
        assert!(!e.is_fresh(ts(1100)));
        assert!(!e.is_expired(ts(1149)));
        assert!(e.is_expired(ts(1150)));
        assert_eq!(e.fresh_ttl(ts(1040)), Duration::from_millis(60));
        assert_eq!(e.physical_ttl(ts(1040)), Duration::from_millis(110));
        assert_eq!(e.original_ttl(), Duration::from_millis(100));
    }

    #[test]
    fn absent_marker_is_not_a_value() {
        let e: Entry<String> = Entry::absent(ts(0), Duration::from_secs(10));
        assert!(e.is_absent());
        assert_eq!(e.value(), None);
        let p = Entry::new("x".to_string(), ts(0), Duration::from_secs(10));
        assert!(!p.is_absent());
    }

    #[test]
    fn tags_are_validated_and_deduplicated() {
        let t = Tags::new(["a", "b", "a"]).expect("valid");
        assert_eq!(t.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(Tags::new([""]).is_err());
        assert!(Tags::new(["has space"]).is_err());
        assert!(Tags::new(["x".repeat(MAX_TAG_LEN + 1)]).is_err());
        assert!(Tags::new(["x".repeat(MAX_TAG_LEN)]).is_ok());
        assert!(Tags::new(Vec::<String>::new()).expect("empty").is_empty());
    }

    #[test]
    fn capping_never_extends() {
        let e = Entry::new(1, ts(0), Duration::from_secs(10))
            .with_stale_window(Duration::from_secs(10));
        let c = e.clone().capped_at(ts(5_000));
        assert_eq!(c.stale_until(), ts(5_000));
        assert_eq!(c.fresh_until(), ts(5_000));
        let c = e.clone().capped_at(ts(60_000));
        assert_eq!(c, e);
    }

    proptest! {
        #[test]
        fn stale_never_precedes_fresh(
            created in 0u64..1 << 50,
            ttl in 0u64..1 << 40,
            stale in proptest::option::of(0u64..1 << 52),
        ) {
            let fresh = ts(created).saturating_add(Duration::from_millis(ttl));
            let e = Entry::from_parts(Some(()), ts(created), fresh, stale.map(ts), Tags::none());
            prop_assert!(e.stale_until() >= e.fresh_until());
            prop_assert!(e.is_expired(e.stale_until()));
            prop_assert!(!e.is_fresh(e.fresh_until()));
        }
    }
}
