//! [`RedisCluster`]: a real three-master Redis Cluster on loopback.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use crate::error::TestkitError;
use crate::resp::Reply;
use crate::server::{RedisServer, free_port};

/// Redis Cluster's slot count.
const SLOTS: u16 = 16_384;
/// The cluster bus listens on the data port plus this offset.
const BUS_OFFSET: u16 = 10_000;
/// How long the cluster may take to report `cluster_state:ok`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Redis Cluster of `n` masters (no replicas) on `127.0.0.1`, slots split
/// evenly. Every node is killed when the cluster is dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts a three-master cluster and waits until it reports `cluster_state:ok`.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_masters(3)
    }

    /// Starts a cluster of `masters` nodes (at least 1).
    pub fn start_masters(masters: usize) -> Result<Self, TestkitError> {
        // Each node has its own directory, so one config file name serves all.
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ];
        let nodes = (0..masters.max(1))
            .map(|_| RedisServer::start_on_picked_port(cluster_port, &args))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = RedisCluster { nodes };
        cluster.assign_slots()?;
        cluster.meet()?;
        cluster.wait_ok()?;
        Ok(cluster)
    }

    fn assign_slots(&self) -> Result<(), TestkitError> {
        let n = self.nodes.len() as u32;
        for (i, node) in self.nodes.iter().enumerate() {
            let i = i as u32;
            let first = u32::from(SLOTS) * i / n;
            let last = u32::from(SLOTS) * (i + 1) / n - 1;
            node.connect()?.cmd(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ])?;
        }
        Ok(())
    }

    fn meet(&self) -> Result<(), TestkitError> {
        let mut first = self.nodes[0].connect()?;
        for node in &self.nodes[1..] {
            first.cmd(&["CLUSTER", "MEET", "127.0.0.1", &node.port().to_string()])?;
        }
        Ok(())
    }

    fn wait_ok(&self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let all_ok = self.nodes.iter().all(|n| {
                n.cluster_info()
                    .map(|i| i.contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if all_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                let info = self.nodes[0]
                    .cluster_info()
                    .unwrap_or_else(|e| e.to_string());
                return Err(TestkitError::NotReady(format!(
                    "cluster not ok after {CLUSTER_TIMEOUT:?}:\n{info}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The nodes (masters), in slot order.
    #[must_use]
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One node, to kill or restart it.
    pub fn node_mut(&mut self, i: usize) -> Option<&mut RedisServer> {
        self.nodes.get_mut(i)
    }

    /// `redis://127.0.0.1:PORT/` of every node (the seed list for a cluster client).
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `CLUSTER INFO` as answered by the first node.
    pub fn info(&self) -> Result<String, TestkitError> {
        self.nodes[0].cluster_info()
    }
}

impl RedisServer {
    /// `CLUSTER INFO` of this node.
    pub fn cluster_info(&self) -> Result<String, TestkitError> {
        match self.connect()?.cmd(&["CLUSTER", "INFO"])? {
            r @ (Reply::Bulk(_) | Reply::Status(_)) => Ok(r.as_text().unwrap_or_default()),
            other => Err(TestkitError::Redis(format!(
                "CLUSTER INFO answered {other:?}"
            ))),
        }
    }
}

/// A port whose cluster-bus twin (`port + 10000`) is free as well.
fn cluster_port() -> Result<u16, TestkitError> {
    for _ in 0..64 {
        let port = free_port()?;
        let Some(bus) = port.checked_add(BUS_OFFSET) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok() {
            return Ok(port);
        }
    }
    Err(TestkitError::NotReady(
        "no port pair (p, p+10000) free on loopback".into(),
    ))
}
