//! [`FaultProxy`]: a real TCP proxy between a client and a server that injects
//! latency, black holes, refusals and cut connections on command.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::error::TestkitError;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward everything at once.
    #[default]
    None,
    /// Deliver every chunk this long after it arrived (both directions).
    Latency(Duration),
    /// Keep connections open but deliver nothing (a network partition).
    BlackHole,
    /// Close every new connection as soon as it is accepted.
    Refuse,
}

#[derive(Debug)]
struct Shared {
    fault: Mutex<Fault>,
    accepted: AtomicU64,
    /// Bumped to close every open connection.
    cut: watch::Sender<u64>,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A TCP proxy on a free loopback port, forwarding to `upstream`.
///
/// It runs on its own thread and runtime, so it works from sync and async tests
/// alike; it shuts down when dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use cache_testkit::{FaultProxy, RedisServer};
///
/// let server = RedisServer::start()?;
/// let proxy = FaultProxy::start(server.addr())?;
/// // Point the client at proxy.url() instead of server.url(), then:
/// proxy.set_latency(Duration::from_millis(300));
/// proxy.black_hole();
/// proxy.cut_connections();
/// proxy.heal();
/// # Ok::<(), cache_testkit::TestkitError>(())
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Self, TestkitError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (cut, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::None),
            accepted: AtomicU64::new(0),
            cut,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                rt.block_on(async move {
                    if let Ok(listener) = TcpListener::from_std(std_listener) {
                        accept_loop(listener, upstream, task_shared, shutdown_rx).await;
                    }
                });
            })?;
        Ok(FaultProxy {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The proxy's listening address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT/` of the proxy.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.addr.port())
    }

    /// Sets the fault mode.
    pub fn set_fault(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// The current fault mode.
    #[must_use]
    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// Adds `latency` to every chunk, both directions.
    pub fn set_latency(&self, latency: Duration) {
        self.set_fault(Fault::Latency(latency));
    }

    /// Swallows all traffic while connections stay open.
    pub fn black_hole(&self) {
        self.set_fault(Fault::BlackHole);
    }

    /// Closes new connections at once.
    pub fn refuse(&self) {
        self.set_fault(Fault::Refuse);
    }

    /// Back to plain forwarding.
    pub fn heal(&self) {
        self.set_fault(Fault::None);
    }

    /// Closes every open connection (the listener stays up).
    pub fn cut_connections(&self) {
        self.shared.cut.send_modify(|g| *g += 1);
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                if shared.fault() == Fault::Refuse {
                    drop(client);
                    continue;
                }
                tokio::spawn(serve(client, upstream, Arc::clone(&shared)));
            }
        }
    }
}

async fn serve(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return; // upstream down: the client sees its connection closed
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut cut = shared.cut.subscribe();
    cut.mark_unchanged();
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = pipe(cr, sw, Arc::clone(&shared)) => {}
        _ = pipe(sr, cw, Arc::clone(&shared)) => {}
        _ = cut.changed() => {}
    }
    // Dropping the halves closes both sockets.
}

/// Reads from `from` and delivers to `to`, applying the fault in force when each
/// chunk arrives. Latency is a delay line: chunks keep their spacing, so
/// throughput is preserved while every byte arrives `latency` late.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = match shared.fault() {
                Fault::None | Fault::Refuse => Instant::now(),
                Fault::Latency(d) => Instant::now() + d,
                Fault::BlackHole => continue,
            };
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    // Whichever side ends first ends the pipe (a closed reader drains no further).
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
}
