//! `cargo xtask invariants`: the architecture rules that can be checked
//! mechanically — dependency arrows (from `cargo tree`), no environment reads
//! below the facade, and source files small enough to read.

use std::path::{Path, PathBuf};

use crate::{Result, cargo, root};

/// What a crate's normal dependencies (transitively) must not include.
const FORBIDDEN_DEPS: &[(&str, &[&str])] = &[
    // Primitives stand alone: no workspace crate, no async runtime.
    ("cache-singleflight", &["cache-", "tokio"]),
    ("cache-breaker", &["cache-", "tokio"]),
    ("cache-ttl-jitter", &["cache-", "tokio"]),
    ("cache-bloom", &["cache-", "tokio"]),
    // Contracts know no store, no Redis, no runtime.
    ("cache-core", &["cache-", "redis", "tokio"]),
    // Stores know nothing of singleflight, breakers, exporters or the layers above.
    (
        "cache-store-memory",
        &[
            "cache-singleflight",
            "cache-breaker",
            "cache-metrics",
            "cache-tiered",
            "resilient-cache",
            "redis",
            "tokio",
        ],
    ),
    (
        "cache-store-redis",
        &[
            "cache-singleflight",
            "cache-breaker",
            "cache-metrics",
            "cache-tiered",
            "resilient-cache",
            "cache-store-memory",
        ],
    ),
    (
        "cache-tiered",
        &[
            "cache-singleflight",
            "resilient-cache",
            "metrics-exporter-prometheus",
        ],
    ),
    (
        "cache-metrics",
        &["cache-tiered", "resilient-cache", "cache-store-redis"],
    ),
];

/// Code lines a source file may hold (tests and comments not counted).
const MAX_CODE_LINES: usize = 500;

/// Crates below the facade: they must not read the environment.
const NO_ENV: &[&str] = &[
    "cache-core",
    "store-memory",
    "store-redis",
    "tiered",
    "metrics",
    "singleflight",
    "breaker",
    "ttl-jitter",
    "bloom",
];

/// Checks the architecture invariants that can be checked mechanically.
pub(crate) fn invariants(args: &[String]) -> Result {
    if let Some(a) = args.first() {
        return Err(format!("invariants takes no arguments (got {a})"));
    }
    println!("\n==> invariants");
    let mut broken = Vec::new();
    for (krate, forbidden) in FORBIDDEN_DEPS {
        let out = cargo()
            .args([
                "tree",
                "-p",
                krate,
                "-e",
                "normal",
                "--prefix",
                "none",
                "--all-features",
            ])
            .args(["--format", "{p}"])
            .output()
            .map_err(|e| format!("cargo tree: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo tree -p {krate} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        for dep in text.lines().skip(1) {
            let name = dep.split_whitespace().next().unwrap_or_default();
            if name == *krate {
                continue;
            }
            if let Some(f) = forbidden.iter().find(|f| {
                if f.ends_with('-') {
                    name.starts_with(*f)
                } else {
                    name == **f
                }
            }) {
                broken.push(format!("{krate} depends on {name} (rule: no {f})"));
            }
        }
    }
    for dir in NO_ENV {
        let src = root().join("crates").join(dir).join("src");
        for file in rust_files(&src) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (i, line) in text.lines().enumerate() {
                if line.contains("env::var") || line.contains("std::env::") {
                    broken.push(format!(
                        "{}:{}: reads the environment below the facade",
                        file.display(),
                        i + 1
                    ));
                }
            }
        }
    }
    // Files stay small enough to read: code lines (not blank, not comments,
    // not the inline test module) of every library and tool source file.
    for dir in ["crates", "xtask"] {
        for file in rust_files(&root().join(dir)) {
            if file
                .components()
                .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "target")
            {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let code = text
                .split("\n#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or_default();
            let lines = code
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("//"))
                .count();
            if lines > MAX_CODE_LINES {
                broken.push(format!(
                    "{}: {lines} lines of code (at most {MAX_CODE_LINES}): split it by concern",
                    file.display()
                ));
            }
        }
    }
    if broken.is_empty() {
        println!("<== invariants: dependency arrows, env reads and file sizes hold");
        Ok(())
    } else {
        Err(format!(
            "architecture invariants broken:\n  {}",
            broken.join("\n  ")
        ))
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}
