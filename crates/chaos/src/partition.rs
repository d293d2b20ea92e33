//! One instance cut off from a healthy Redis while the others go on: the
//! invalidations it cannot hear (or cannot send) must reach it (or them) once
//! its link is back, within the same grace as after an outage.
//!
//! Every other fault scenario cuts the whole fleet off at once; this is the
//! fault where one instance's L1 drifts from the rest: its bus is silent while
//! the others invalidate, or its own invalidations wait in its recovery queue
//! while the others keep serving the old values.

use crate::{Fault, INSTANCES, INVALIDATIONS, Run, Timing, check, standalone};

/// Which instance loses its link to Redis.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// One that only reads: the others' invalidations happen while it cannot
    /// hear the bus.
    Reader,
    /// The one that invalidates: its removals reach neither L2 nor the bus
    /// until its link is back.
    Invalidator,
}

/// The fleet invalidates from instance 0 ([`crate::harness::Fleet::invalidate`]); the cut
/// instance is that one or the last.
fn cut_index(cut: Cut) -> usize {
    match cut {
        Cut::Invalidator => 0,
        Cut::Reader => INSTANCES - 1,
    }
}

pub(crate) async fn partition(t: Timing, cut: Cut) -> Run {
    // Connections stay open and every byte is swallowed: the cut instance
    // learns of the fault only from its timeouts.
    let mut run = standalone(t, Fault::BlackHole, Some(cut_index(cut))).await;
    if cut == Cut::Reader
        && let Ok(m) = &mut run
    {
        // The others reloaded the invalidated keys during the fault and put
        // them in L2; the instance back from the partition hears of them from
        // the bus and should read them from there, not from the source.
        let after = m
            .phases
            .iter()
            .find(|p| p.name == "after")
            .map_or(u64::MAX, |p| p.loads);
        let allowed = INVALIDATIONS / 2;
        m.checks.push(check(
            "source loads after the link is back (what the rejoining instance missed is in L2)",
            after <= allowed,
            format!("{after} ≤ {allowed} of {INVALIDATIONS} invalidated keys"),
        ));
    }
    run
}
