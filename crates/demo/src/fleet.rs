//! The story's processes: two service instances (this binary with `instance`)
//! and what they share. Each instance is stopped by closing its standard input
//! (it then drains its cache and exits), and killed if it does not stop in time
//! or when its handle is dropped, so an error or a panic leaves no process
//! behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// One running instance of the service.
pub(crate) struct Instance {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Kept open so the instance can still write to its standard output.
    _stdout: BufReader<ChildStdout>,
}

impl Instance {
    /// Starts `name` on `port` (0: any free port) and waits until it listens.
    pub(crate) fn start(
        name: &'static str,
        port: u16,
        redis_url: Option<&str>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["instance", "--name", name, "--port", &port.to_string()]);
        if let Some(url) = redis_url {
            cmd.args(["--redis", url]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err("no pipe to the instance".into());
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        match (read, addr) {
            (Ok(_), Some(addr)) => Ok(Self {
                name,
                addr,
                child,
                stdin,
                _stdout: stdout,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("instance {name} did not start (said {:?})", line.trim()).into())
            }
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the instance to stop (it drains its cache first) and waits up to
    /// `grace`; kills it after that.
    pub(crate) fn stop(&mut self, grace: Duration) {
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < grace {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
