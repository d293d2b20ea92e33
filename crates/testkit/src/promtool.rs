//! Prometheus' `promtool`, for checking exposition text and rule files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::TestkitError;

/// Finds `promtool`: `$PROMTOOL`, then `PATH`, then `/usr/bin/promtool` (Debian's
/// `prometheus` package; `cargo xtask test` installs it).
pub fn promtool_binary() -> Result<PathBuf, TestkitError> {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(TestkitError::ToolMissing("promtool"))
        };
    }
    crate::server::find_on_path("promtool")
        .or_else(|| Some(PathBuf::from("/usr/bin/promtool")).filter(|p| p.is_file()))
        .ok_or(TestkitError::ToolMissing("promtool"))
}

/// Runs `promtool args…` (in `dir`, when given) with `stdin` piped in; its combined
/// output on success.
///
/// # Errors
/// [`TestkitError::ToolMissing`], I/O errors, or [`TestkitError::ToolFailed`] with
/// promtool's output when it exits unsuccessfully (a lint finding, a bad rule).
pub fn promtool(args: &[&str], dir: Option<&Path>, stdin: &str) -> Result<String, TestkitError> {
    let mut cmd = Command::new(promtool_binary()?);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn()?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(TestkitError::ToolFailed(format!(
            "promtool {}: {}\n{text}",
            args.join(" "),
            out.status
        )))
    }
}
