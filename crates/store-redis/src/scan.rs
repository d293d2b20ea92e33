//! Prefix invalidation: every live master's keys under a prefix, found with
//! `SCAN MATCH` routed by address and unlinked in batches.

use cache_core::{CacheError, Codec};
use redis::cluster_routing::SingleNodeRoutingInfo;

use crate::store::RedisStore;

impl<C: Codec> RedisStore<C> {
    /// The masters to scan: `None` for a standalone server, else the address of every
    /// master that is not marked failed.
    pub(crate) async fn masters(&self) -> Result<Option<Vec<(String, u16)>>, CacheError> {
        if !self.is_cluster() {
            return Ok(None);
        }
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let text: String = self
            .query_node("cluster_nodes", cmd, SingleNodeRoutingInfo::Random)
            .await?;
        Ok(Some(parse_masters(&text)))
    }

    /// One `SCAN` step on one server (a given master in a cluster).
    pub(crate) async fn scan_step(
        &self,
        node: Option<&(String, u16)>,
        cursor: u64,
        pattern: &str,
    ) -> Result<(u64, Vec<Vec<u8>>), CacheError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(self.inner.scan_count);
        let route = match node {
            Some((host, port)) => SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            },
            // Standalone: the route is not used.
            None => SingleNodeRoutingInfo::Random,
        };
        self.query_node("scan", cmd, route).await
    }

    /// Scans one server for `pattern` and unlinks what it finds, batch by batch.
    pub(crate) async fn scan_and_unlink(
        &self,
        node: Option<&(String, u16)>,
        pattern: &str,
    ) -> Result<u64, CacheError> {
        let mut removed = 0;
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan_step(node, cursor, pattern).await?;
            pending.extend(keys);
            if pending.len() >= self.inner.batch_size {
                removed += self.unlink_all(&pending).await?;
                pending.clear();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        removed += self.unlink_all(&pending).await?;
        Ok(removed)
    }
}

/// Parses `CLUSTER NODES` output into the addresses of healthy masters.
fn parse_masters(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let _id = fields.next()?;
            let addr = fields.next()?;
            let flags = fields.next()?;
            let is_master = flags.split(',').any(|f| f == "master");
            let failed = flags.split(',').any(|f| f == "fail" || f == "noaddr");
            if !is_master || failed {
                return None;
            }
            let host_port = addr.split('@').next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// Escapes the glob metacharacters of `SCAN MATCH` (`*`, `?`, `[`, `]`, `\`).
#[must_use]
pub fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(escape_glob(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
        assert_eq!(escape_glob("plain:key"), "plain:key");
    }

    #[test]
    fn cluster_nodes_output_yields_live_masters() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003 master,fail - 0 1426238318243 3 connected
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            parse_masters(text),
            vec![
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30001)
            ]
        );
    }
}
