//! Publishing checks: a verified `cargo package` of every published crate,
//! and the getting-started page built as a crate of its own.

use std::env;
use std::path::PathBuf;

use crate::{Result, cargo, package_name, root, run, target_dir};

/// The workspace's crates that go to crates.io (every member without
/// `publish = false`): package name and directory, by name.
fn published_crates() -> Vec<(String, PathBuf)> {
    let Ok(dirs) = std::fs::read_dir(root().join("crates")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = dirs
        .flatten()
        .map(|d| d.path())
        .filter(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|t| !t.lines().any(|l| l.trim() == "publish = false"))
        })
        .filter_map(|dir| package_name(&dir.join("Cargo.toml")).map(|name| (name, dir)))
        .collect();
    out.sort();
    out
}

/// `cargo package` of every published crate, verified (each builds from its
/// packaged sources against the others' packages): no dependency cycle, no file
/// outside a crate, no missing metadata.
pub(crate) fn package() -> Result {
    let crates = published_crates();
    if crates.len() < 10 {
        return Err(format!("expected the published crates, found {crates:?}"));
    }
    forget_unpacked_packages(&crates);
    let mut cmd = cargo();
    cmd.args(["package", "--allow-dirty"]);
    for (name, _) in &crates {
        cmd.args(["-p", name]);
    }
    run("cargo package", &mut cmd)
}

/// `cargo package` verifies each crate against the others' packages through a
/// temporary local registry, whose crates cargo unpacks once into
/// `$CARGO_HOME/registry/src/-<hash>/NAME-VERSION` and never again: a later
/// run with changed sources under the same version would verify against the
/// stale copy (a new `cache-core` method was "missing" that way), and cargo
/// takes a registry crate's build as fresh by its version alone. Removes
/// those copies of our crates and our crates' debug fingerprints first, so
/// the verification rebuilds them; crates.io's copies and every other build
/// are left alone.
fn forget_unpacked_packages(crates: &[(String, PathBuf)]) {
    let is_ours = |file_name: &str| {
        crates.iter().any(|(name, _)| {
            file_name
                .strip_prefix(name.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_alphanumeric()))
        })
    };
    // Removes the entries of `dir` named after one of our crates.
    let forget = |dir: &std::path::Path| {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if is_ours(&entry.file_name().to_string_lossy())
                && let Err(e) = std::fs::remove_dir_all(entry.path())
            {
                eprintln!("xtask: could not remove {}: {e}", entry.path().display());
            }
        }
    };
    forget(&target_dir().join("debug").join(".fingerprint"));
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return;
    };
    for registry in std::fs::read_dir(&src).into_iter().flatten().flatten() {
        // Local registries are named after their path's hash alone.
        if registry.file_name().to_string_lossy().starts_with('-') {
            forget(&registry.path());
        }
    }
}

/// The fenced blocks of `lang` in a Markdown page, in order.
fn fenced_blocks(page: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in page.lines() {
        match current.as_mut() {
            None => {
                let info = line.trim().strip_prefix("```").unwrap_or("!");
                if info.split(',').next() == Some(lang) {
                    current = Some(String::new());
                }
            }
            Some(block) if line.trim() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

/// A crate of its own, outside the workspace, built from the getting-started
/// page as written: its `[dependencies]` block and its `src/main.rs`. The
/// workspace's crates stand in for the published ones through
/// `[patch.crates-io]`, and the workspace's lock file pins the rest.
pub(crate) fn guide_crate() -> Result {
    let page_path = root().join("docs/guide/getting-started.md");
    let page =
        std::fs::read_to_string(&page_path).map_err(|e| format!("{}: {e}", page_path.display()))?;
    let toml = fenced_blocks(&page, "toml");
    let rust = fenced_blocks(&page, "rust");
    let (Some(deps), Some(main_rs), 1, 1) = (toml.first(), rust.first(), toml.len(), rust.len())
    else {
        return Err("the getting-started page needs one toml and one rust block".into());
    };
    let dir = target_dir().join("guide-crate");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).map_err(|e| e.to_string())?;
    let mut manifest = String::from(
        "[package]\nname = \"guide-getting-started\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[workspace]\n\n",
    );
    manifest.push_str(deps);
    manifest.push_str("\n[patch.crates-io]\n");
    for (name, dir) in published_crates() {
        manifest.push_str(&format!(
            "{name} = {{ path = {:?} }}\n",
            dir.display().to_string()
        ));
    }
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(dir.join("Cargo.toml"), &manifest)?;
    write(dir.join("src/main.rs"), main_rs)?;
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).map_err(|e| e.to_string())?;
    let mut cmd = cargo();
    cmd.current_dir(&dir)
        .args(["build", "--quiet"])
        .env("CARGO_TARGET_DIR", target_dir());
    run("a fresh crate from docs/guide/getting-started.md", &mut cmd)
}
