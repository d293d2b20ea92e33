//! [`RedisServer`]: a real `redis-server` process on a free loopback port.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::TestkitError;
use crate::resp::{RawConnection, Reply};

/// How long a server may take to answer its first PING.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts at finding a free port before giving up.
const PORT_ATTEMPTS: usize = 8;

/// Finds the `redis-server` binary: `$REDIS_SERVER`, then `PATH`, then the usual
/// Debian location.
pub fn redis_server_binary() -> Result<PathBuf, TestkitError> {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(TestkitError::RedisServerMissing)
        };
    }
    find_on_path("redis-server")
        .or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.is_file()))
        .ok_or(TestkitError::RedisServerMissing)
}

pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, TestkitError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// A running `redis-server` on `127.0.0.1`, with no persistence, in its own
/// temporary directory. Killed when dropped (also when the test panics).
///
/// ```no_run
/// let mut server = cache_testkit::RedisServer::start()?;
/// let url = server.url(); // redis://127.0.0.1:PORT/
/// server.kill();          // outage
/// server.restart()?;      // back, same port
/// # drop(url);
/// # Ok::<(), cache_testkit::TestkitError>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    extra_args: Vec<String>,
    /// From `--requirepass`: raw connections authenticate, the URL carries it.
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server on a free port.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra `redis-server` arguments (for example
    /// `["--requirepass", "secret"]`).
    pub fn start_with_args(args: &[&str]) -> Result<Self, TestkitError> {
        Self::start_on_picked_port(free_port, args)
    }

    /// Starts a server that also serves TLS on a free port, with `pki`'s
    /// certificates as `options` says; the plain port stays for the testkit's
    /// own raw connections.
    pub fn start_tls(
        pki: &crate::TestPki,
        options: crate::TlsServer,
    ) -> Result<Self, TestkitError> {
        Self::start_tls_with(pki, options, (free_port, false), &[])
    }

    /// [`start_tls`](Self::start_tls) with a TLS port chosen by `pick_tls_port`
    /// and extra arguments. A cluster node (`cluster_bus`) has its cluster bus
    /// on the TLS port plus 10000 (the cluster's picker checks that one too).
    pub(crate) fn start_tls_with(
        pki: &crate::TestPki,
        options: crate::TlsServer,
        (pick_tls_port, cluster_bus): (fn() -> Result<u16, TestkitError>, bool),
        args: &[&str],
    ) -> Result<Self, TestkitError> {
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let tls_port = pick_tls_port()?;
            let mut all = pki.server_args(tls_port, options);
            if cluster_bus {
                all.push("--cluster-port".into());
                all.push((u32::from(tls_port) + 10_000).to_string());
            }
            all.extend(args.iter().map(|a| (*a).to_owned()));
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            match Self::start_with_args(&refs) {
                Ok(s) => return Ok(s),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(TestkitError::NotReady("no attempt made".into())))
    }

    /// The TLS port, for a server started with one.
    #[must_use]
    pub fn tls_port(&self) -> Option<u16> {
        let i = self.extra_args.iter().position(|a| a == "--tls-port")?;
        self.extra_args.get(i + 1)?.parse().ok()
    }

    /// `rediss://localhost:TLS_PORT/` (with the password, if any), or the plain
    /// [`url`](Self::url) for a server without TLS.
    #[must_use]
    pub fn tls_url(&self) -> String {
        let Some(port) = self.tls_port() else {
            return self.url();
        };
        match &self.password {
            Some(password) => format!("rediss://:{password}@localhost:{port}/"),
            None => format!("rediss://localhost:{port}/"),
        }
    }

    /// Starts a server on a port chosen by `pick_port`, trying again with a new
    /// port when the start fails (someone may have taken the port between probe
    /// and bind). The cluster uses it with a picker that also checks the bus port.
    pub(crate) fn start_on_picked_port(
        pick_port: fn() -> Result<u16, TestkitError>,
        args: &[&str],
    ) -> Result<Self, TestkitError> {
        let binary = redis_server_binary()?;
        let extra_args: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = pick_port()?;
            match Self::start_on(binary.clone(), port, extra_args.clone()) {
                Ok(s) => return Ok(s),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(TestkitError::NotReady("no attempt made".into())))
    }

    fn start_on(binary: PathBuf, port: u16, extra_args: Vec<String>) -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new().prefix("cache-redis-").tempdir()?;
        let password = extra_args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| extra_args.get(i + 1))
            .cloned();
        let mut server = RedisServer {
            binary,
            port,
            dir,
            extra_args,
            password,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), TestkitError> {
        let port = self.port.to_string();
        let log = self.log_path();
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(TestkitError::NotReady(format!(
                    "exited with {status} on port {}\n{}",
                    self.port,
                    self.log_tail()
                )));
            }
            if self.ping().is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(TestkitError::NotReady(format!(
                    "no PONG within {READY_TIMEOUT:?} on port {}\n{}",
                    self.port,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends PING over a fresh connection.
    pub fn ping(&self) -> Result<(), TestkitError> {
        let mut c = self.connect()?;
        match c.cmd(&["PING"])? {
            Reply::Status(s) if s == "PONG" => Ok(()),
            other => Err(TestkitError::Redis(format!("PING answered {other:?}"))),
        }
    }

    /// A raw blocking connection to this server, authenticated when the server
    /// was started with `--requirepass`.
    pub fn connect(&self) -> Result<RawConnection, TestkitError> {
        let mut c = RawConnection::connect(self.addr())?;
        if let Some(password) = &self.password {
            match c.cmd(&["AUTH", password])? {
                Reply::Status(s) if s == "OK" => {}
                other => return Err(TestkitError::Redis(format!("AUTH answered {other:?}"))),
            }
        }
        Ok(c)
    }

    /// The server's port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:PORT/`, or `redis://:PASSWORD@127.0.0.1:PORT/` for a
    /// server started with `--requirepass`.
    #[must_use]
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// `redis://127.0.0.1:PORT/` whatever the server requires.
    #[must_use]
    pub fn url_without_password(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's working directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id while the server runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the process at once (SIGKILL), like a crash, and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, after [`kill`](Self::kill).
    /// Retries for a while if the port is still held by a lingering socket.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.kill();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
