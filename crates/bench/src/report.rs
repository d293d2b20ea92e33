//! Results: figures, target checks, and their renderings (stdout table,
//! `report.md`, `results.json`, SVG charts).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// One measured number.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    pub(crate) group: &'static str,
    /// Which chart/table section inside the group (e.g. "get-hit, 1 thread").
    pub(crate) series: String,
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    /// The label of the figure this one is compared with, and value / baseline.
    pub(crate) baseline: Option<String>,
    pub(crate) ratio: Option<f64>,
}

/// A target from the issue, checked against the figures of this run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) goal: String,
    pub(crate) measured: String,
    pub(crate) met: bool,
}

/// Everything one run produced.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) machine: String,
    /// What the figures were measured against: the anchors' and the raw
    /// client's versions, and the redis-server's.
    pub(crate) versions: String,
    pub(crate) mode: &'static str,
    pub(crate) figures: Vec<Figure>,
    pub(crate) targets: Vec<Target>,
    pub(crate) notes: Vec<String>,
}

impl Report {
    pub(crate) fn figure(
        &mut self,
        group: &'static str,
        series: impl Into<String>,
        label: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) {
        self.figures.push(Figure {
            group,
            series: series.into(),
            label: label.into(),
            value,
            unit,
            baseline: None,
            ratio: None,
        });
    }

    /// Sets ratios against `baseline` for every figure of `group`/`series`.
    pub(crate) fn compare(&mut self, group: &str, series: &str, baseline: &str) {
        let Some(base) = self
            .figures
            .iter()
            .find(|f| f.group == group && f.series == series && f.label == baseline)
            .map(|f| f.value)
        else {
            return;
        };
        for f in &mut self.figures {
            if f.group == group && f.series == series && f.label != baseline && base != 0.0 {
                f.baseline = Some(baseline.to_owned());
                f.ratio = Some(f.value / base);
            }
        }
    }

    pub(crate) fn value(&self, group: &str, series: &str, label: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.group == group && f.series == series && f.label == label)
            .map(|f| f.value)
    }

    pub(crate) fn target(
        &mut self,
        name: impl Into<String>,
        goal: impl Into<String>,
        measured: impl Into<String>,
        met: bool,
    ) {
        self.targets.push(Target {
            name: name.into(),
            goal: goal.into(),
            measured: measured.into(),
            met,
        });
    }

    /// The plain-text table for stdout.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let mut last = ("", String::new());
        for f in &self.figures {
            if (f.group, f.series.clone()) != last {
                let _ = writeln!(out, "\n{} — {}", f.group, f.series);
                last = (f.group, f.series.clone());
            }
            let ratio = f
                .ratio
                .map(|r| format!("{r:>7.2}× {}", f.baseline.as_deref().unwrap_or("")))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<34} {:>14} {:<8} {}",
                f.label,
                fmt_value(f.value),
                f.unit,
                ratio
            );
        }
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\ntargets");
            for t in &self.targets {
                let mark = if t.met { "met   " } else { "MISSED" };
                let _ = writeln!(
                    out,
                    "  [{mark}] {:<44} goal {:<28} measured {}",
                    t.name, t.goal, t.measured
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }

    /// `report.md`.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# cargo xtask bench ({})\n", self.mode);
        let _ = writeln!(out, "Machine: {}\n", self.machine);
        let _ = writeln!(out, "Against: {}\n", self.versions);
        if !self.targets.is_empty() {
            let _ = writeln!(
                out,
                "## Targets\n\n| target | goal | measured | |\n|---|---|---|---|"
            );
            for t in &self.targets {
                let mark = if t.met { "met" } else { "**missed**" };
                let _ = writeln!(out, "| {} | {} | {} | {mark} |", t.name, t.goal, t.measured);
            }
            let _ = writeln!(out);
        }
        let mut last = ("", String::new());
        for f in &self.figures {
            if (f.group, f.series.clone()) != last {
                let _ = writeln!(
                    out,
                    "\n### {} — {}\n\n| | value | unit | ratio |\n|---|---:|---|---|",
                    f.group, f.series
                );
                last = (f.group, f.series.clone());
            }
            let ratio = f
                .ratio
                .map(|r| format!("{r:.2}× {}", f.baseline.as_deref().unwrap_or("")))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                f.label,
                fmt_value(f.value),
                f.unit,
                ratio
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }

    /// Writes report.md, results.json and one SVG per charted series into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("results.json"), json)?;
        let mut charts = Vec::new();
        let mut series: Vec<(&str, &str)> = Vec::new();
        for f in &self.figures {
            if matches!(f.group, "l1 throughput" | "hit ratio" | "real traces")
                && !series.contains(&(f.group, f.series.as_str()))
            {
                series.push((f.group, f.series.as_str()));
            }
        }
        for (group, s) in series {
            let bars: Vec<(&str, f64, bool)> = self
                .figures
                .iter()
                .filter(|f| f.group == group && f.series == s)
                .map(|f| (f.label.as_str(), f.value, is_ours(&f.label)))
                .collect();
            let unit = self
                .figures
                .iter()
                .find(|f| f.group == group && f.series == s)
                .map_or("", |f| f.unit);
            let file = format!("{}-{}.svg", slug(group), slug(s));
            std::fs::write(
                dir.join(&file),
                bar_chart(&format!("{group}: {s}"), &bars, unit),
            )?;
            charts.push(file);
        }
        Ok(charts)
    }
}

fn is_ours(label: &str) -> bool {
    label.starts_with("store-memory") || label.starts_with("facade")
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// The median of repeated samples (0 for none).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub(crate) fn fmt_value(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A horizontal bar chart; our bars are highlighted.
fn bar_chart(title: &str, bars: &[(&str, f64, bool)], unit: &str) -> String {
    let max = bars
        .iter()
        .map(|b| b.1)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    // Room for the longest label (about 6.6 px a character at 12 px).
    let longest = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(0);
    let (left, width, row) = ((longest as f64 * 6.6 + 20.0).max(190.0), 420.0, 26.0);
    let height = 50.0 + row * bars.len() as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="12">"#,
        left + width + 110.0
    );
    let _ = write!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = write!(
        svg,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, (label, value, ours)) in bars.iter().enumerate() {
        let y = 34.0 + row * i as f64;
        let w = (value / max * width).max(1.0);
        let color = if *ours { "#d9480f" } else { "#4c6ef5" };
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + 15.0,
            escape(label)
        );
        let _ = write!(
            svg,
            r#"<rect x="{left}" y="{y}" width="{w:.1}" height="{}" fill="{color}"/>"#,
            row - 6.0
        );
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}">{} {}</text>"#,
            left + w + 6.0,
            y + 15.0,
            fmt_value(*value),
            escape(unit)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_renderings() {
        let mut r = Report::default();
        r.figure(
            "l1 throughput",
            "get-hit, 1 thread",
            "quick_cache",
            200.0,
            "Mops/s",
        );
        r.figure(
            "l1 throughput",
            "get-hit, 1 thread",
            "store-memory",
            100.0,
            "Mops/s",
        );
        r.compare("l1 throughput", "get-hit, 1 thread", "quick_cache");
        assert_eq!(r.figures[1].ratio, Some(0.5));
        assert_eq!(r.figures[0].ratio, None);
        r.target("store-memory get-hit", "≥ 1.0× quick_cache", "0.50×", false);
        assert!(r.markdown().contains("**missed**"));
        assert!(r.table().contains("MISSED"));
        let svg = bar_chart("t", &[("a<b", 1.0, true), ("c", 2.0, false)], "x");
        assert!(svg.contains("a&lt;b") && svg.ends_with("</svg>\n"));
        assert_eq!(slug("get-hit, 1 thread"), "get-hit-1-thread");
    }
}
