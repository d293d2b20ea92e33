//! The chaos report: markdown for people, JSON for tools.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::harness::CONCURRENCY;
use crate::{HOT_KEYS, INSTANCES, INVALIDATIONS, L2_WATCH, Outcome};

pub(crate) fn render(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Chaos report\n");
    let _ = writeln!(
        s,
        "{INSTANCES} instances, {CONCURRENCY} concurrent callers, {HOT_KEYS} hot keys (fit L1), \
         {INVALIDATIONS} keys invalidated on one instance during each fault.\n"
    );
    for o in outcomes {
        let _ = writeln!(s, "## {}\n\n{}\n", o.scenario, o.about);
        let _ = writeln!(
            s,
            "| phase | s | calls | errors | wrong | stale after inv. | loads | L1 entries | p50 µs | p99 µs | max ms |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for p in &o.phases {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                p.name,
                p.seconds,
                p.calls,
                p.errors,
                p.wrong,
                p.stale_after_invalidate,
                p.loads,
                p.l1_entries,
                p.p50_us,
                p.p99_us,
                p.max_ms
            );
        }
        match o.l2_used_again_s {
            Some(l2) => {
                let _ = writeln!(
                    s,
                    "\nL2 used again (every breaker closed, every recovery queue empty) {l2:.2} s after the fault ended."
                );
            }
            None if o.l2_bypass_s.is_some() => {
                let _ = writeln!(
                    s,
                    "\nL2 not used again within {} s of the fault's end.",
                    L2_WATCH.as_secs()
                );
            }
            None => {}
        }
        if let Some(b) = o.l2_bypass_s {
            let _ = writeln!(
                s,
                "\nL2 bypassed (some breaker not closed) for {b:.2} s in all, from the fault's start."
            );
        }
        let _ = writeln!(s);
        for c in &o.checks {
            let _ = writeln!(
                s,
                "- {} {}: {}",
                if c.ok { "ok" } else { "**MISSED**" },
                c.what,
                c.detail
            );
        }
        let _ = writeln!(s);
    }
    s
}

pub(crate) fn write_report(
    dir: &PathBuf,
    report: &str,
    outcomes: &[Outcome],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.md"), report)?;
    let json = serde_json::to_string_pretty(outcomes).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("results.json"), json)
}
