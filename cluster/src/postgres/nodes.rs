//! Which nodes of a shard serve history reads: the read list, as the last
//! probe ([`super::probe`]) found each node.
//!
//! A standby that answered with a replay lag under `max_read_lag` is in
//! the list; one that is down, lags more, or has become the primary is not.
//! With no standby in the list, reads go to the primary. The list is an
//! array of flags read without a lock on the read path. Each node's role is
//! kept too, for the status, and for reads that fall back to any node that
//! answers while the primary is unreachable (a failover in progress).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use deadpool_postgres::Pool;

use crate::store_admin::NodeStatus;

/// One node of a shard and what the last probe found.
pub(crate) struct Node {
    host: String,
    pool: Pool,
    /// A standby within the lag bound.
    readable: AtomicBool,
    /// Replay lag in ms at the last probe (`u64::MAX`: unknown or down).
    lag_ms: AtomicU64,
    /// [`DOWN`], [`PRIMARY`] or [`STANDBY`] at the last probe.
    role: AtomicU8,
}

/// What the last probe found a node to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// It did not answer.
    Down = 0,
    Primary = 1,
    Standby = 2,
}

const DOWN: u8 = Role::Down as u8;
const PRIMARY: u8 = Role::Primary as u8;
const STANDBY: u8 = Role::Standby as u8;

/// The nodes of one shard. See the module docs.
pub(crate) struct ReadNodes {
    shard: String,
    nodes: Vec<Node>,
    next: AtomicUsize,
}

impl ReadNodes {
    pub(crate) fn new(shard: &str, nodes: Vec<(String, Pool)>) -> Self {
        Self {
            shard: shard.to_owned(),
            nodes: nodes
                .into_iter()
                .map(|(host, pool)| Node {
                    host,
                    pool,
                    readable: AtomicBool::new(false),
                    lag_ms: AtomicU64::new(u64::MAX),
                    role: AtomicU8::new(DOWN),
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A readable standby (its `host:port` and pool), round robin; `None`
    /// if there is none.
    pub(crate) fn pick(&self) -> Option<(&str, &Pool)> {
        let n = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.nodes[(start + i) % n])
            .find(|node| node.readable.load(Ordering::Relaxed))
            .map(|node| (node.host.as_str(), &node.pool))
    }

    /// Takes `host` out of the read list until the next probe finds it fit
    /// (a read found it gone between two probes).
    pub(crate) fn drop_from_reads(&self, host: &str) {
        for node in self.nodes.iter().filter(|n| n.host == host) {
            node.readable.store(false, Ordering::Relaxed);
        }
    }

    /// Every node that answered the last probe, standbys first: where a
    /// read goes when the primary cannot be reached.
    pub(crate) fn answering(&self) -> Vec<(&str, &Pool)> {
        let mut nodes: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| n.role.load(Ordering::Relaxed) != DOWN)
            .collect();
        nodes.sort_by_key(|n| n.role.load(Ordering::Relaxed) != STANDBY);
        nodes
            .into_iter()
            .map(|n| (n.host.as_str(), &n.pool))
            .collect()
    }

    /// The shard's name.
    pub(crate) fn shard(&self) -> &str {
        &self.shard
    }

    /// Every node, for the probe.
    pub(crate) fn each(&self) -> &[Node] {
        &self.nodes
    }

    /// Every node as the last probe found it.
    pub(crate) fn status(&self) -> Vec<NodeStatus> {
        self.nodes
            .iter()
            .map(|n| {
                let lag = n.lag_ms.load(Ordering::Relaxed);
                let role = match n.role.load(Ordering::Relaxed) {
                    PRIMARY => "primary",
                    STANDBY => "standby",
                    _ => "down",
                };
                NodeStatus {
                    host: n.host.clone(),
                    role: role.to_owned(),
                    readable: n.readable.load(Ordering::Relaxed),
                    lag_ms: (lag != u64::MAX).then_some(lag),
                }
            })
            .collect()
    }
}

impl Node {
    /// `host:port`.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Its connections.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Records what a probe found; returns whether the node was in the read
    /// list before.
    pub(crate) fn record(&self, role: Role, readable: bool, lag_ms: u64) -> bool {
        self.role.store(role as u8, Ordering::Relaxed);
        self.lag_ms.store(lag_ms, Ordering::Relaxed);
        self.readable.swap(readable, Ordering::Relaxed)
    }
}
