//! Project automation. Run `cargo xtask help`.
//!
//! - `cargo xtask test` — every test of the workspace: unit, integration (against a
//!   real `redis-server`; metrics and alert rules checked by `promtool`; both
//!   installed from Debian's packages when missing and we are root), doctests, and
//!   the loom models.
//! - `cargo xtask ci` — formatting, clippy, rustdoc (all with warnings denied), then
//!   `test`, a `chaos --quick` run, a `bench --quick` smoke run, then `cargo deny check` when cargo-deny is
//!   installed.
//! - `cargo xtask bench` — the benchmark harness (`crates/bench`, release build):
//!   this project side by side with moka, quick_cache, a sharded `Mutex<LruCache>`
//!   and the raw redis client; report in `target/bench/`.
//! - `cargo xtask demo` — the example service (`crates/demo`) through its story.
//! - `cargo xtask chaos` — the fault suite (`crates/chaos`): several instances
//!   under load through Redis kills, pauses, latency, black holes, a cluster
//!   failover and slot migration; report in `target/chaos/`. `ci` runs `--quick`.
#![forbid(unsafe_code)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

mod invariants;
mod publish;

use invariants::invariants;
use publish::{guide_crate, package};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "test" => test(rest),
        "ci" => ci(rest),
        "bench" => bench(rest),
        "demo" => demo(rest),
        "package" => package(),
        "guide-crate" => guide_crate(),
        "chaos" => chaos(rest),
        "invariants" => invariants(rest),
        "help" | "-h" | "--help" => {
            print_help();
            Ok(())
        }
        other => Err(format!("unknown command `{other}`; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         commands:\n  \
         test [--no-loom] [-- <test args>]   run every test (installs redis-server and promtool if missing and root)\n  \
         ci                                  fmt + clippy + docs (-D warnings), test, package, chaos --quick, bench --quick, cargo deny\n  \
         package                             cargo package (verified) of every published crate\n  \
         guide-crate                         build a crate outside the workspace from docs/guide/getting-started.md\n  \
         bench [--quick] [--filter G] [--out D]  benchmarks vs moka, quick_cache, Mutex<LruCache>, raw redis (target/bench/)\n  \
         demo [--serve] [--quick] [--port P]  two instances of the example service over one Redis, through a story\n  \
         chaos [--quick] [--filter S] [--out D] [--breaker consecutive]  several instances through Redis faults (target/chaos/)\n  \
         invariants                          dependency arrows, no env reads below the facade, file sizes\n  \
         help                                this text"
    );
}

/// Where cargo builds: `CARGO_TARGET_DIR` (relative to the root) or `target/`.
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(
        || root().join("target"),
        |t| root().join(t), // an absolute path replaces the root
    )
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    let manifest = env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        PathBuf::from,
    );
    manifest
        .parent()
        .map_or(manifest.clone(), Path::to_path_buf)
}

/// Where the loom models build (apart: they need `--cfg cache_loom`).
fn loom_dir() -> PathBuf {
    root().join("target/loom")
}

/// Set by `ci`: builds skip incremental data (a one-off build never reuses it, and
/// it doubled the size of `target/`), and every step reports the disk left.
static IN_CI: AtomicBool = AtomicBool::new(false);

fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    if IN_CI.load(Ordering::Relaxed) {
        c.env("CARGO_INCREMENTAL", "0");
    }
    c
}

/// The space left on the disk that holds `target/`, as `df` prints it.
fn disk_left() -> Option<String> {
    let dir = target_dir();
    let probe = if dir.exists() { dir } else { root() };
    let out = Command::new("df")
        .args(["-h", "--output=avail"])
        .arg(probe)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).map(|l| l.trim().to_owned())
}

fn run(step: &str, cmd: &mut Command) -> Result {
    println!("\n==> {step}");
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: could not start: {e}"))?;
    let disk = if IN_CI.load(Ordering::Relaxed) {
        disk_left().map_or_else(String::new, |d| format!(" ({d} left on disk)"))
    } else {
        String::new()
    };
    println!(
        "<== {step}: {status} in {:.1}s{disk}",
        start.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A program the tests run, and the Debian package that ships it.
struct Tool {
    binary: &'static str,
    /// Overrides the lookup (the test kit honours the same variable).
    env_var: &'static str,
    package: &'static str,
    /// How to get it by hand.
    hint: &'static str,
}

/// What the tests need: real Redis servers and Prometheus' checker.
const TOOLS: &[Tool] = &[
    Tool {
        binary: "redis-server",
        env_var: "REDIS_SERVER",
        package: "redis-server",
        hint: "Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis",
    },
    Tool {
        binary: "promtool",
        env_var: "PROMTOOL",
        package: "prometheus",
        hint: "Debian/Ubuntu: sudo apt-get install prometheus; macOS: brew install prometheus",
    },
];

impl Tool {
    /// On PATH or where Debian puts it (the same places the test kit looks).
    fn installed(&self) -> std::result::Result<bool, String> {
        if let Some(p) = env::var_os(self.env_var) {
            return if Path::new(&p).is_file() {
                Ok(true)
            } else {
                Err(format!("{}={p:?} is not a file", self.env_var))
            };
        }
        Ok(on_path(self.binary).is_some() || Path::new("/usr/bin").join(self.binary).is_file())
    }
}

/// Makes sure every tool in [`TOOLS`] exists: installs the missing ones from
/// Debian's packages when we are root and apt-get is there, otherwise explains
/// what to do.
fn ensure_tools() -> Result {
    let mut missing = Vec::new();
    for tool in TOOLS {
        if !tool.installed()? {
            missing.push(tool);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    if is_root() && on_path("apt-get").is_some() {
        println!(
            "missing {}: installing Debian's {}",
            missing
                .iter()
                .map(|t| t.binary)
                .collect::<Vec<_>>()
                .join(", "),
            packages.join(", ")
        );
        // A stale or missing package list makes the install fail; refresh it first.
        run(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
        )?;
        run(
            &format!("apt-get install {}", packages.join(" ")),
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        for tool in &missing {
            if !tool.installed()? {
                return Err(format!(
                    "{} is still missing after apt-get install",
                    tool.binary
                ));
            }
        }
        return Ok(());
    }
    Err(missing
        .iter()
        .map(|t| {
            format!(
                "the tests need {} and it is not installed.\n  {}\n  or set {}=/path/to/{}",
                t.binary, t.hint, t.env_var, t.binary
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Packages with loom models: crates whose `tests/` holds `loom_*.rs` files.
fn loom_targets() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root().join("crates")) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = dirs.filter_map(|d| d.ok().map(|d| d.path())).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(tests) = std::fs::read_dir(dir.join("tests")) else {
            continue;
        };
        let mut names: Vec<String> = tests
            .filter_map(|t| t.ok())
            .filter_map(|t| t.file_name().into_string().ok())
            .filter(|n| n.starts_with("loom_") && n.ends_with(".rs"))
            .map(|n| n.trim_end_matches(".rs").to_string())
            .collect();
        if names.is_empty() {
            continue;
        }
        names.sort();
        if let Some(pkg) = package_name(&dir.join("Cargo.toml")) {
            out.push((pkg, names));
        }
    }
    out
}

fn package_name(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .map(str::to_string)
}

fn test(args: &[String]) -> Result {
    let (flags, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut loom = true;
    for f in flags {
        match f.as_str() {
            "--no-loom" => loom = false,
            other => return Err(format!("unknown flag for test: {other}")),
        }
    }
    ensure_tools()?;

    if succeeds(cargo().args(["nextest", "--version"])) {
        run(
            "tests (nextest)",
            cargo()
                .args([
                    "nextest",
                    "run",
                    "--workspace",
                    "--all-features",
                    "--no-fail-fast",
                ])
                .args(passthrough),
        )?;
    } else {
        println!("(cargo-nextest not found: using cargo test)");
        run(
            "tests (cargo test)",
            cargo()
                .args([
                    "test",
                    "--workspace",
                    "--all-features",
                    "--lib",
                    "--bins",
                    "--tests",
                ])
                .args(passthrough),
        )?;
    }
    run(
        "doctests",
        cargo().args(["test", "--workspace", "--all-features", "--doc"]),
    )?;

    if loom {
        for (pkg, tests) in loom_targets() {
            let mut cmd = cargo();
            cmd.args(["test", "--release", "-p", &pkg]);
            for t in &tests {
                cmd.args(["--test", t]);
            }
            cmd.env("RUSTFLAGS", "--cfg cache_loom")
                .env("CARGO_TARGET_DIR", loom_dir());
            if env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
                cmd.env("LOOM_MAX_PREEMPTIONS", "3");
            }
            run(&format!("loom models of {pkg}"), &mut cmd)?;
        }
    }
    Ok(())
}

/// Installs redis-server when it is missing and we can; the bench and the demo
/// run without it (they say so), so a failure here is only reported.
fn redis_if_possible() {
    if let Err(e) = ensure_tools() {
        println!("(not every tool is available: {e})");
    }
}

fn bench(args: &[String]) -> Result {
    redis_if_possible();
    run(
        "bench",
        cargo()
            .args(["run", "--release", "--quiet", "-p", "cache-bench", "--"])
            .args(args),
    )
}

/// Builds the demo with cargo's progress showing, then becomes it (`exec`):
/// Ctrl-C or SIGTERM to `cargo xtask demo` reach the demo itself, which stops
/// its two instances and its redis-server before exiting.
fn demo(args: &[String]) -> Result {
    redis_if_possible();
    run(
        "build the demo (release)",
        cargo().args(["build", "--release", "-p", "cache-demo"]),
    )?;
    let binary = target_dir().join("release").join("cache-demo");
    let mut cmd = Command::new(&binary);
    cmd.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        Err(format!("could not start {}: {e}", binary.display()))
    }
    #[cfg(not(unix))]
    run("demo", &mut cmd)
}

/// The fault suite needs real servers: a missing redis-server is an error here.
fn chaos(args: &[String]) -> Result {
    ensure_tools()?;
    run(
        "chaos",
        cargo()
            .args(["run", "--release", "--quiet", "-p", "cache-chaos", "--"])
            .args(args),
    )
}

fn ci(args: &[String]) -> Result {
    if let Some(a) = args.first() {
        return Err(format!("ci takes no arguments (got {a})"));
    }
    IN_CI.store(true, Ordering::Relaxed);
    if let Some(d) = disk_left() {
        println!("ci: {d} left on the disk that holds target/");
    }
    run("rustfmt", cargo().args(["fmt", "--all", "--check"]))?;
    invariants(&[])?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "rustdoc",
        cargo()
            .args(["doc", "--workspace", "--all-features", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    test(&[])?;
    // Build output no later step reads: trybuild's copy of the dependencies and
    // the loom build.
    for dir in [target_dir().join("tests"), loom_dir()] {
        let _ = std::fs::remove_dir_all(dir);
    }
    package()?;
    guide_crate()?;
    ensure_tools()?;
    // One release build for both: built apart, each resolves its own features
    // (the bench turns on the default features of futures-util, parking_lot
    // and foldhash), and everything above those was compiled twice.
    run(
        "build chaos and bench (release)",
        cargo().args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "cache-chaos",
            "-p",
            "cache-bench",
        ]),
    )?;
    let release = target_dir().join("release");
    for (step, binary) in [("chaos", "cache-chaos"), ("bench", "cache-bench")] {
        run(
            step,
            Command::new(release.join(binary))
                .arg("--quick")
                .current_dir(root()),
        )?;
    }
    if succeeds(cargo().args(["deny", "--version"])) {
        run("cargo deny", cargo().args(["deny", "check"]))?;
    } else {
        println!("\n(cargo-deny is not installed: skipping `cargo deny check`)");
    }
    println!("\nci: all steps passed");
    Ok(())
}
