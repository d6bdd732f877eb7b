//! Which nodes of a shard serve history reads: availability probing.
//!
//! Every `probe_interval` each logic stamps the time on its shard's primary
//! (`courier_heartbeat`), then asks every node of the shard whether it is
//! in recovery (a standby) and how old its copy of the newest stamp is:
//! that age is the node's replay lag. A standby that answers with a lag
//! under `max_read_lag` is in the read list; one that is down, lags more,
//! or has become the primary leaves it until a later probe finds it fit
//! again. With no standby in the list, reads go to the primary.
//!
//! The list is an array of flags read without a lock on the read path. The
//! probe also records each node's role, for the status, and for reads that
//! fall back to any node that answers while the primary is unreachable
//! (a failover in progress).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use super::shard::{bounded, pg_error, Shard};
use crate::store_admin::NodeStatus;
use crate::Result;

/// One node of a shard and what the last probe found.
struct Node {
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
const DOWN: u8 = 0;
const PRIMARY: u8 = 1;
const STANDBY: u8 = 2;

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

/// Probes `shard`'s nodes every `probe_interval` until `stop`; `writer`
/// names this logic's heartbeat row.
pub(crate) async fn probe(shard: Arc<Shard>, writer: String, stop: CancellationToken) {
    let mut tick = tokio::time::interval(shard.opts.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = stamp(&shard, &writer).await {
            tracing::debug!(shard = %shard.name, error = %e, "cannot stamp the primary's heartbeat");
        }
        let probes = shard.nodes.nodes.iter().map(|node| check(&shard, node));
        futures::future::join_all(probes).await;
    }
}

/// Writes this logic's heartbeat on the primary.
async fn stamp(shard: &Shard, writer: &str) -> Result<()> {
    shard
        .execute(
            "INSERT INTO courier_heartbeat (writer, at) VALUES ($1, clock_timestamp())
             ON CONFLICT (writer) DO UPDATE SET at = EXCLUDED.at",
            &[&writer],
        )
        .await
        .map(drop)
}

/// Asks one node for its role and lag and updates its flags.
async fn check(shard: &Shard, node: &Node) {
    let bound = shard.opts.probe_interval.max(Duration::from_millis(200));
    let answer = async {
        let conn = node.pool.get().await.map_err(pg_error)?;
        let row = bounded(
            bound,
            conn.query_one(
                "SELECT pg_is_in_recovery(),
                        (extract(epoch FROM clock_timestamp() - max(at)) * 1000)::float8
                   FROM courier_heartbeat",
                &[],
            ),
        )
        .await?;
        let standby: bool = row.try_get(0).map_err(pg_error)?;
        let lag: Option<f64> = row.try_get(1).map_err(pg_error)?;
        Ok::<_, crate::Error>((standby, lag))
    };
    let (role, readable, lag_ms) = match tokio::time::timeout(bound * 2, answer).await {
        Ok(Ok((true, Some(lag)))) => {
            // Clocks may put a fresh stamp slightly in the future.
            let lag_ms = lag.max(0.0) as u64;
            (STANDBY, lag_ms <= millis(shard.opts.max_read_lag), lag_ms)
        }
        Ok(Ok((true, None))) => (STANDBY, false, u64::MAX),
        Ok(Ok((false, _))) => (PRIMARY, false, u64::MAX),
        Ok(Err(e)) => {
            tracing::debug!(shard = %shard.name, node = %node.host, error = %e, "node did not answer the probe");
            (DOWN, false, u64::MAX)
        }
        Err(_) => (DOWN, false, u64::MAX),
    };
    node.role.store(role, Ordering::Relaxed);
    let was = node.readable.swap(readable, Ordering::Relaxed);
    node.lag_ms.store(lag_ms, Ordering::Relaxed);
    if was != readable {
        if readable {
            tracing::info!(shard = %shard.name, node = %node.host, lag_ms, "standby joins the read list");
        } else {
            tracing::info!(shard = %shard.name, node = %node.host, "node leaves the read list (down, lagging or primary)");
        }
    }
    let lag_seconds = if lag_ms == u64::MAX {
        f64::NAN
    } else {
        lag_ms as f64 / 1000.0
    };
    metrics::gauge!("courier_store_replay_lag_seconds", "shard" => shard.nodes.shard.clone(), "node" => node.host.clone())
        .set(lag_seconds);
    metrics::gauge!("courier_store_node_readable", "shard" => shard.nodes.shard.clone(), "node" => node.host.clone())
        .set(if readable { 1.0 } else { 0.0 });
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
