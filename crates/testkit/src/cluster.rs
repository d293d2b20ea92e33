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

/// How long a promotion after a master's death may take (node timeout, election
/// and the cluster agreeing again).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Redis Cluster on `127.0.0.1`: `n` masters with the slots split
/// evenly, and optionally replicas of each (see
/// [`start_with_replicas`](Self::start_with_replicas)). Every node is killed when
/// the cluster is dropped.
#[derive(Debug)]
pub struct RedisCluster {
    /// Masters first (in slot order), then replicas.
    nodes: Vec<RedisServer>,
    masters: usize,
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
        let masters = nodes.len();
        let cluster = RedisCluster { nodes, masters };
        cluster.assign_slots()?;
        cluster.meet()?;
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// Starts a three-master cluster whose clients and cluster bus speak TLS
    /// with `pki`'s certificates (each node's plain port stays for the
    /// testkit's raw connections); [`tls_urls`](Self::tls_urls) are the seeds.
    pub fn start_tls(pki: &crate::TestPki) -> Result<Self, TestkitError> {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
            "--tls-cluster",
            "yes",
            "--tls-replication",
            "yes",
        ];
        // With `tls-cluster`, the bus listens on the TLS port plus 10000.
        let nodes = (0..3)
            .map(|_| {
                RedisServer::start_tls_with(
                    pki,
                    crate::TlsServer::default(),
                    (cluster_port, true),
                    &args,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = RedisCluster { nodes, masters: 3 };
        cluster.assign_slots()?;
        cluster.meet()?;
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// Starts `masters` masters with `replicas` replicas each, a short node
    /// timeout (1 s, so a dead master is replaced within seconds), and waits until
    /// every replica is in sync with its master and the cluster reports
    /// `cluster_state:ok`.
    pub fn start_with_replicas(masters: usize, replicas: usize) -> Result<Self, TestkitError> {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            "--cluster-replica-validity-factor",
            "0",
        ];
        let masters = masters.max(1);
        let total = masters * (1 + replicas);
        let nodes = (0..total)
            .map(|_| RedisServer::start_on_picked_port(cluster_port, &args))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = RedisCluster { nodes, masters };
        cluster.assign_slots()?;
        cluster.meet()?;
        cluster.wait_known()?;
        for r in 0..masters * replicas {
            let master = &cluster.nodes[r % masters];
            let id = node_id(master)?;
            let replica = &cluster.nodes[masters + r];
            replica.connect()?.cmd(&["CLUSTER", "REPLICATE", &id])?;
        }
        cluster.wait_ok()?;
        cluster.wait_replicas_synced()?;
        Ok(cluster)
    }

    fn assign_slots(&self) -> Result<(), TestkitError> {
        let n = self.masters as u32;
        for (i, node) in self.nodes[..self.masters].iter().enumerate() {
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
            let port = node.tls_port().unwrap_or(node.port());
            first.cmd(&["CLUSTER", "MEET", "127.0.0.1", &port.to_string()])?;
        }
        Ok(())
    }

    /// Polls `ready` every 50 ms for up to [`CLUSTER_TIMEOUT`].
    fn wait_for(what: &str, mut ready: impl FnMut() -> bool) -> Result<(), TestkitError> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        while !ready() {
            if Instant::now() > deadline {
                return Err(TestkitError::NotReady(format!(
                    "{what} after {CLUSTER_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Waits until every node knows every other (so `CLUSTER REPLICATE` finds its
    /// master).
    fn wait_known(&self) -> Result<(), TestkitError> {
        let want = self.nodes.len();
        Self::wait_for("not every node knows every other", || {
            self.nodes.iter().all(|n| {
                n.cluster_info()
                    .ok()
                    .and_then(|i| info_value(&i, "cluster_known_nodes"))
                    .and_then(|v| v.parse::<usize>().ok())
                    == Some(want)
            })
        })
    }

    fn wait_replicas_synced(&self) -> Result<(), TestkitError> {
        Self::wait_for("replicas not in sync", || {
            self.nodes[self.masters..]
                .iter()
                .all(|n| replication(n).is_ok_and(|r| r.contains("master_link_status:up")))
        })
    }

    /// Kills the master that owns `slot` (SIGKILL) and waits until one of its
    /// replicas has been promoted and the cluster is `ok` again. Returns the index
    /// of the killed node and of the new master in [`nodes`](Self::nodes).
    pub fn kill_master_and_wait_for_promotion(
        &mut self,
        slot: u16,
    ) -> Result<(usize, usize), TestkitError> {
        let old = self.owner_of(slot)?;
        self.nodes[old].kill();
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        loop {
            if let Ok(new) = self.owner_of(slot)
                && new != old
                && self.live_nodes_ok()
            {
                return Ok((old, new));
            }
            if Instant::now() > deadline {
                return Err(TestkitError::NotReady(format!(
                    "no replica took over slot {slot} within {FAILOVER_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn live_nodes_ok(&mut self) -> bool {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect();
        live.iter().all(|&i| {
            self.nodes[i]
                .cluster_info()
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    }

    /// The index of the node that serves `slot` as master, as a live node
    /// reports it (`CLUSTER SHARDS`-free: parsed from `CLUSTER NODES`).
    pub fn owner_of(&mut self, slot: u16) -> Result<usize, TestkitError> {
        let mut last = None;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_running() {
                continue;
            }
            let text = match self.nodes[i].connect()?.cmd(&["CLUSTER", "NODES"]) {
                Ok(r) => r.as_text().unwrap_or_default(),
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            for line in text.lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                    continue;
                };
                if !flags.split(',').any(|f| f == "master")
                    || flags.split(',').any(|f| f == "fail" || f == "fail?")
                {
                    continue;
                }
                let owns = fields.iter().skip(8).any(|range| {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    match (lo.parse::<u16>(), hi.parse::<u16>()) {
                        (Ok(lo), Ok(hi)) => (lo..=hi).contains(&slot),
                        _ => false,
                    }
                });
                if !owns {
                    continue;
                }
                let port = addr
                    .split('@')
                    .next()
                    .and_then(|hp| hp.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse::<u16>().ok());
                if let Some(idx) = self.nodes.iter().position(|n| Some(n.port()) == port) {
                    return Ok(idx);
                }
            }
            return Err(TestkitError::NotReady(format!(
                "no live master owns slot {slot}"
            )));
        }
        Err(last.unwrap_or_else(|| TestkitError::NotReady("no live node".into())))
    }

    /// Moves `slot` from its owner to the master at index `to`, keys included
    /// (`SETSLOT IMPORTING/MIGRATING`, `MIGRATE` in batches, `SETSLOT NODE`), as
    /// `redis-cli --cluster reshard` would. Clients see `ASK` and `MOVED`
    /// redirections meanwhile.
    pub fn migrate_slot(&mut self, slot: u16, to: usize) -> Result<(), TestkitError> {
        let from = self.owner_of(slot)?;
        if from == to {
            return Ok(());
        }
        let slot_s = slot.to_string();
        let to_id = node_id(&self.nodes[to])?;
        let from_id = node_id(&self.nodes[from])?;
        let to_port = self.nodes[to].port().to_string();
        self.nodes[to]
            .connect()?
            .cmd(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id])?;
        self.nodes[from]
            .connect()?
            .cmd(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id])?;
        let mut src = self.nodes[from].connect()?;
        loop {
            let keys = src.cmd(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"])?;
            let keys: Vec<String> = match keys {
                Reply::Array(Some(items)) => items.iter().filter_map(Reply::as_text).collect(),
                _ => Vec::new(),
            };
            if keys.is_empty() {
                break;
            }
            let mut args: Vec<&str> =
                vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            src.cmd(&args)?;
        }
        for node in &mut self.nodes {
            if !node.is_running() {
                continue;
            }
            node.connect()?
                .cmd(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id])?;
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

    /// The nodes: masters in slot order, then replicas (replica `r` follows
    /// master `r % masters`).
    #[must_use]
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One node, to kill or restart it.
    pub fn node_mut(&mut self, i: usize) -> Option<&mut RedisServer> {
        self.nodes.get_mut(i)
    }

    /// `rediss://localhost:TLS_PORT/` of every node of a cluster started with
    /// [`start_tls`](Self::start_tls).
    #[must_use]
    pub fn tls_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::tls_url).collect()
    }

    /// `redis://127.0.0.1:PORT/` of every node (the seed list for a cluster client).
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// How many masters the cluster was started with.
    #[must_use]
    pub fn masters(&self) -> usize {
        self.masters
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

/// `CLUSTER MYID` of a node.
fn node_id(node: &RedisServer) -> Result<String, TestkitError> {
    node.connect()?
        .cmd(&["CLUSTER", "MYID"])?
        .as_text()
        .ok_or_else(|| TestkitError::Redis("CLUSTER MYID answered no text".into()))
}

/// `INFO replication` of a node.
fn replication(node: &RedisServer) -> Result<String, TestkitError> {
    Ok(node
        .connect()?
        .cmd(&["INFO", "replication"])?
        .as_text()
        .unwrap_or_default())
}

fn info_value(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_owned())
    })
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
