//! How a node packs an entry's times into two `u32` millisecond deltas.

use cache_core::Timestamp;

/// An entry's times as a node packs them: `fresh_until - created_at` and
/// `stale_until - fresh_until` in milliseconds, or `None` when either does not
/// fit a `u32` (the node is then `WIDE`).
pub(super) fn packed_times(
    created_at: Timestamp,
    fresh_until: Timestamp,
    stale_until: Timestamp,
) -> Option<(u32, u32)> {
    let delta = |from: Timestamp, to: Timestamp| {
        to.as_millis()
            .checked_sub(from.as_millis())
            .and_then(|d| u32::try_from(d).ok())
    };
    Some((
        delta(created_at, fresh_until)?,
        delta(fresh_until, stale_until)?,
    ))
}
