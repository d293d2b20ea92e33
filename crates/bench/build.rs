//! Bakes the versions of the anchors (and of the raw Redis client) that this
//! build links, read from the workspace's `Cargo.lock`, into `ANCHOR_VERSIONS`
//! for the report's header.

use std::path::PathBuf;

/// The crates whose versions the report names, in the order it names them.
const ANCHORS: [&str; 4] = ["quick_cache", "moka", "lru", "redis"];

fn main() {
    let lock = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let versions: Vec<String> = ANCHORS
        .iter()
        .map(|name| {
            let version = locked_version(&text, name).unwrap_or("(version unknown)");
            format!("{name} {version}")
        })
        .collect();
    println!("cargo:rustc-env=ANCHOR_VERSIONS={}", versions.join(", "));
}

/// The version of the package `name` in a `Cargo.lock`'s text (the first
/// one, should several be locked).
fn locked_version<'a>(lock: &'a str, name: &str) -> Option<&'a str> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line == wanted {
            return lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|l| l.strip_suffix('"'));
        }
    }
    None
}
