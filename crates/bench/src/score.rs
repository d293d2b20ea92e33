//! `cache-bench --ours-traces … --against results.json`: scores
//! store-memory's real-trace ratios against the anchors of an earlier full
//! run, by the rules the full run's targets use (best anchor − 0.5 points,
//! plain LRU − 0.5 points, ahead of the best anchor on average; moka counted
//! only where that run found it within its capacity). A policy change is then
//! judged in a minute instead of a full run.

use std::collections::BTreeMap;

use serde_json::Value;

/// The rule for one cell: within half a point of the best anchor and
/// of plain LRU (when the run had one).
pub(crate) fn cell_met(ours: f64, best: f64, lru: Option<f64>) -> bool {
    ours >= best - 0.5 && lru.is_none_or(|l| ours >= l - 0.5)
}

/// The mean of the cells' gaps to their best anchors (0 without cells); the
/// goal is that it be positive.
pub(crate) fn mean_gap(gaps: &[f64]) -> f64 {
    gaps.iter().sum::<f64>() / gaps.len().max(1) as f64
}

/// The anchors of one cell (trace, capacity) in an earlier run.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Anchors {
    /// The best anchor's label and ratio (store-memory and OPT excluded, and
    /// any anchor that run noted as not counted).
    pub(crate) best: Option<(String, f64)>,
    pub(crate) lru: Option<f64>,
}

/// Reads the real-trace anchors of a `results.json`, by cell.
pub(crate) fn anchors(results: &Value) -> Result<BTreeMap<(String, usize), Anchors>, String> {
    let figures = results
        .get("figures")
        .and_then(Value::as_array)
        .ok_or("no `figures` array: not a cache-bench results.json")?;
    let notes: Vec<&str> = results
        .get("notes")
        .and_then(Value::as_array)
        .map(|n| n.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut cells: BTreeMap<(String, usize), Anchors> = BTreeMap::new();
    for f in figures {
        let field = |name: &str| f.get(name).and_then(Value::as_str);
        if field("group") != Some("real traces") {
            continue;
        }
        let (Some(trace), Some(label), Some(value)) = (
            field("series"),
            field("label"),
            f.get("value").and_then(Value::as_f64),
        ) else {
            continue;
        };
        let Some((who, capacity)) = label.rsplit_once(" @ ") else {
            continue;
        };
        let Ok(capacity) = capacity.parse::<usize>() else {
            continue;
        };
        let cell = format!("{trace} @ {capacity}: {who} ");
        let excluded = notes
            .iter()
            .any(|n| n.starts_with(&cell) && n.ends_with("not counted as an anchor"));
        let anchors = cells.entry((trace.to_owned(), capacity)).or_default();
        if who == "plain LRU" {
            anchors.lru = Some(value);
        }
        if who == "store-memory" || who == "OPT" || excluded {
            continue;
        }
        if anchors.best.as_ref().is_none_or(|(_, best)| value > *best) {
            anchors.best = Some((who.to_owned(), value));
        }
    }
    Ok(cells)
}

/// One line per cell and a summary, for store-memory's `ours` ratios.
pub(crate) fn score(
    ours: &BTreeMap<(String, usize), f64>,
    anchors: &BTreeMap<(String, usize), Anchors>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let (mut gaps, mut met) = (Vec::new(), 0);
    for (cell, &ratio) in ours {
        let Some(Anchors {
            best: Some((label, best)),
            lru,
        }) = anchors.get(cell)
        else {
            lines.push(format!("{} @ {}: no anchors in that run", cell.0, cell.1));
            continue;
        };
        let gap = ratio - best;
        let ok = cell_met(ratio, *best, *lru);
        gaps.push(gap);
        met += usize::from(ok);
        lines.push(format!(
            "{} @ {}: {ratio:.2} % vs {label} {best:.2} % ({gap:+.2}) {}",
            cell.0,
            cell.1,
            if ok { "met" } else { "MISSED" }
        ));
    }
    if !gaps.is_empty() {
        let mean = mean_gap(&gaps);
        lines.push(format!(
            "mean gap {mean:+.3} pt over {} cells ({}), {met} of {} cells met",
            gaps.len(),
            if mean > 0.0 {
                "ahead: met"
            } else {
                "not ahead: MISSED"
            },
            gaps.len()
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> Value {
        serde_json::json!({
            "figures": [
                {"group": "real traces", "series": "LIRS loop", "label": "OPT @ 10", "value": 1.0},
                {"group": "real traces", "series": "LIRS loop", "label": "store-memory @ 10", "value": 0.9},
                {"group": "real traces", "series": "LIRS loop", "label": "quick_cache @ 10", "value": 0.5},
                {"group": "real traces", "series": "LIRS loop", "label": "moka (as run) @ 10", "value": 0.95},
                {"group": "real traces", "series": "LIRS loop", "label": "plain LRU @ 10", "value": 0.0},
                {"group": "real traces", "series": "ARC P3", "label": "quick_cache @ 7625", "value": 3.5},
                {"group": "real traces", "series": "ARC P3", "label": "plain LRU @ 7625", "value": 1.6},
                {"group": "hit ratio", "series": "Zipf", "label": "quick_cache", "value": 66.0}
            ],
            "notes": [
                "LIRS loop @ 10: moka (as run) held up to 12 entries (capacity 10); not counted as an anchor"
            ]
        })
    }

    #[test]
    fn reads_the_best_counted_anchor_and_lru_per_cell() {
        let cells = anchors(&results()).expect("a results.json");
        let loop10 = &cells[&("LIRS loop".to_owned(), 10)];
        assert_eq!(loop10.best, Some(("quick_cache".to_owned(), 0.5)));
        assert_eq!(loop10.lru, Some(0.0));
        assert_eq!(cells.len(), 2, "other groups are not cells");
        assert!(anchors(&serde_json::json!({"x": 1})).is_err());
    }

    #[test]
    fn scores_cells_and_the_mean() {
        let cells = anchors(&results()).expect("a results.json");
        let ours = BTreeMap::from([
            (("LIRS loop".to_owned(), 10), 0.4),
            (("ARC P3".to_owned(), 7625), 2.0),
            (("LIRS sprite".to_owned(), 70), 25.0),
        ]);
        let lines = score(&ours, &cells);
        assert!(lines[0].starts_with("ARC P3 @ 7625: 2.00 % vs quick_cache 3.50 % (-1.50) MISSED"));
        assert!(lines[1].ends_with("(-0.10) met"), "{}", lines[1]);
        assert_eq!(lines[2], "LIRS sprite @ 70: no anchors in that run");
        assert_eq!(
            lines[3],
            "mean gap -0.800 pt over 2 cells (not ahead: MISSED), 1 of 2 cells met"
        );
    }
}
