//! Errors of the test kit.

use std::io;

/// Why a server, cluster or proxy could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum TestkitError {
    /// No `redis-server` binary was found.
    RedisServerMissing,
    /// An I/O error (spawning, connecting, binding).
    Io(io::Error),
    /// The process started but did not become ready; carries its log tail.
    NotReady(String),
    /// Redis answered a setup command with an error.
    Redis(String),
    /// A helper tool (e.g. `promtool`) is not installed.
    ToolMissing(&'static str),
    /// A helper tool ran and reported a problem; carries its output.
    ToolFailed(String),
    /// An HTTP response could not be parsed.
    Http(String),
    /// Test certificates could not be generated.
    Pki(String),
}

impl std::fmt::Display for TestkitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TestkitError::RedisServerMissing => f.write_str(
                "redis-server was not found on PATH (or in $REDIS_SERVER); \
                 run `cargo xtask test`, which installs it, or `apt-get install redis-server`",
            ),
            TestkitError::Io(e) => write!(f, "i/o error: {e}"),
            TestkitError::NotReady(log) => write!(f, "redis-server did not become ready:\n{log}"),
            TestkitError::Redis(msg) => write!(f, "redis answered with an error: {msg}"),
            TestkitError::ToolMissing(tool) => write!(
                f,
                "{tool} was not found; run `cargo xtask test`, which installs it \
                 (promtool comes with Debian's `prometheus` package)"
            ),
            TestkitError::ToolFailed(out) => f.write_str(out),
            TestkitError::Http(msg) => write!(f, "bad HTTP response: {msg}"),
            TestkitError::Pki(msg) => write!(f, "test certificates: {msg}"),
        }
    }
}

impl std::error::Error for TestkitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TestkitError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for TestkitError {
    fn from(e: io::Error) -> Self {
        TestkitError::Io(e)
    }
}
