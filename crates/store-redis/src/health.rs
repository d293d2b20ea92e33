//! Health of the Redis tier: `PING` latency, version and role; in a cluster,
//! every master that owns slots, checked on its own.

use std::time::{Duration, Instant};

use cache_core::{CacheError, Codec, HealthStatus};
use redis::cluster_routing::SingleNodeRoutingInfo;

use crate::store::RedisStore;

/// What a health check of Redis found; see [`RedisStore::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisHealth {
    /// `"standalone"` or `"cluster"`.
    pub mode: &'static str,
    /// Open connections out of the pool size.
    pub connected: usize,
    /// Pool size.
    pub pool_size: usize,
    /// `PING` round trip, when it answered.
    pub latency: Option<Duration>,
    /// `redis_version` from `INFO`.
    pub version: Option<String>,
    /// `role` from `INFO` (`master` or `slave`).
    pub role: Option<String>,
    /// Why the check failed, if it did.
    pub error: Option<String>,
    /// In a cluster: every master that owns slots, each checked on its own
    /// (empty for a standalone server).
    pub masters: Vec<NodeHealth>,
}

/// One cluster master's part of a [`RedisHealth`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeHealth {
    /// `host:port`.
    pub addr: String,
    /// `role` from the node's own `INFO` (`master` unless it was just demoted).
    pub role: Option<String>,
    /// `PING` round trip, when it answered.
    pub latency: Option<Duration>,
    /// Why it did not answer, if it did not (or the cluster marks it failed).
    pub error: Option<String>,
}

impl RedisHealth {
    /// One line for people: mode, connections, version, role, error.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}, {}/{} connected",
            self.mode, self.connected, self.pool_size
        );
        if !self.masters.is_empty() {
            let up = self.masters.iter().filter(|m| m.error.is_none()).count();
            out.push_str(&format!(", {up}/{} masters up", self.masters.len()));
            for m in self.masters.iter().filter(|m| m.error.is_some()) {
                out.push_str(&format!(
                    " ({} down: {})",
                    m.addr,
                    m.error.as_deref().unwrap_or("-")
                ));
            }
        }
        for (label, value) in [
            ("redis ", &self.version),
            ("role ", &self.role),
            ("error: ", &self.error),
        ] {
            if let Some(v) = value {
                out.push_str(", ");
                out.push_str(label);
                out.push_str(v);
            }
        }
        out
    }

    /// Healthy when `PING` answered within half the operation timeout, degraded when
    /// it answered slower, unhealthy when it did not answer.
    #[must_use]
    pub fn status(&self, op_timeout: Duration) -> HealthStatus {
        let masters_down = self.masters.iter().filter(|m| m.error.is_some()).count();
        if masters_down > 0 {
            // Part of the key space is unreachable (or all of it).
            return if masters_down == self.masters.len() {
                HealthStatus::Unhealthy
            } else {
                HealthStatus::Degraded
            };
        }
        match self.latency {
            Some(l) if self.error.is_none() && l <= op_timeout / 2 => HealthStatus::Healthy,
            Some(_) => HealthStatus::Degraded,
            None => HealthStatus::Unhealthy,
        }
    }
}

impl<C: Codec> RedisStore<C> {
    /// Checks Redis: `PING` latency, server version and role, connection state.
    pub async fn check(&self) -> RedisHealth {
        let conns = &self.inner.conns;
        let mut health = RedisHealth {
            mode: if self.is_cluster() {
                "cluster"
            } else {
                "standalone"
            },
            connected: 0,
            pool_size: conns.pool_size(),
            latency: None,
            version: None,
            role: None,
            error: None,
            masters: Vec::new(),
        };
        if self.is_cluster() {
            self.check_masters(&mut health).await;
            health.connected = conns.connected();
            return health;
        }
        match self.ping().await {
            Ok(latency) => {
                health.latency = Some(latency);
                match self.info().await {
                    Ok(info) => {
                        health.version = info_field(&info, "redis_version");
                        health.role = info_field(&info, "role");
                    }
                    Err(e) => health.error = Some(e.to_string()),
                }
            }
            Err(e) => health.error = Some(e.to_string()),
        }
        health.connected = conns.connected();
        health
    }

    /// Checks every slot-owning master of a cluster on its own: `PING` latency and
    /// `INFO` role. The report's latency is the slowest master's; its version and
    /// role are the first master's.
    pub(crate) async fn check_masters(&self, health: &mut RedisHealth) {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let text: String = match self
            .query_node("cluster_nodes", cmd, SingleNodeRoutingInfo::Random)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                health.error = Some(e.to_string());
                return;
            }
        };
        for (host, port, failed) in parse_slot_masters(&text) {
            let addr = format!("{host}:{port}");
            let mut node = NodeHealth {
                addr,
                role: None,
                latency: None,
                error: failed.then(|| "marked failed by the cluster".to_owned()),
            };
            let route = || SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port,
            };
            let started = Instant::now();
            match self
                .query_node::<String>("ping", redis::cmd("PING"), route())
                .await
            {
                Ok(_) => {
                    node.latency = Some(started.elapsed());
                    match self
                        .query_node::<String>("info", redis::cmd("INFO"), route())
                        .await
                    {
                        Ok(info) => {
                            node.role = info_field(&info, "role");
                            if health.version.is_none() {
                                health.version = info_field(&info, "redis_version");
                            }
                        }
                        Err(e) => node.error = Some(e.to_string()),
                    }
                }
                Err(e) => node.error = Some(e.to_string()),
            }
            health.latency = match (health.latency, node.latency) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            health.masters.push(node);
        }
        health.role = health.masters.first().and_then(|m| m.role.clone());
        if health.masters.is_empty() {
            health.error = Some("no master owns any slot".to_owned());
        }
    }

    /// `INFO` from one server (a random node in a cluster).
    pub(crate) async fn info(&self) -> Result<String, CacheError> {
        self.query_node("info", redis::cmd("INFO"), SingleNodeRoutingInfo::Random)
            .await
    }
}

/// Parses `CLUSTER NODES` output into every master that owns slots, and
/// whether the cluster marks it failed.
pub(crate) fn parse_slot_masters(text: &str) -> Vec<(String, u16, bool)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let flags = fields.get(2)?;
            if !flags.split(',').any(|f| f == "master") || fields.len() < 9 {
                return None;
            }
            let failed = flags.split(',').any(|f| f == "fail" || f == "noaddr");
            let host_port = fields.get(1)?.split('@').next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?, failed))
        })
        .collect()
}

/// A field of `INFO` output.
pub(crate) fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == name).then(|| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_output_yields_every_slot_owning_master() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003 master,fail - 0 1426238318243 3 connected 10923-16383
aaaa 127.0.0.1:30005@40005 master,fail - 0 1426238318243 5 connected
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            parse_slot_masters(text),
            vec![
                ("127.0.0.1".to_owned(), 30002, false),
                ("127.0.0.1".to_owned(), 30003, true),
                ("127.0.0.1".to_owned(), 30001, false),
            ]
        );
    }

    #[test]
    fn info_fields_are_found() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrole:master\r\n";
        assert_eq!(info_field(info, "redis_version").as_deref(), Some("7.0.15"));
        assert_eq!(info_field(info, "role").as_deref(), Some("master"));
        assert_eq!(info_field(info, "missing"), None);
    }
}
