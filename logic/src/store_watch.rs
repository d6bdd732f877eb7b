//! Following the store of record's primaries for `/readyz`.
//!
//! The store probes its nodes itself (every `probe_interval`, see
//! `courier_cluster::postgres`); its status says which node of each shard
//! answered as primary. While some shard has none — its primary is down
//! and no standby was promoted yet — that shard's writes fail, and
//! `/readyz` says `not ready: store primary unreachable` so a load balancer
//! sends pushes to a logic that can store them, if there is one. The
//! memory store is always there.

use std::sync::Arc;
use std::time::Duration;

use courier_cluster::store_admin::StoreStatus;
use tokio_util::sync::CancellationToken;

use crate::state::LogicState;

/// How often the status is read (it is kept in memory by the probes).
const EVERY: Duration = Duration::from_millis(500);
/// What `/readyz` says while a shard has no primary.
pub(crate) const NO_PRIMARY: &str = "store primary unreachable";

/// Follows the store until `stop`.
pub(crate) async fn watch_store(shared: Arc<LogicState>, stop: CancellationToken) {
    let Some(admin) = shared.store_admin.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let status = admin.status();
        shared
            .readiness
            .set_blocked(NO_PRIMARY, !every_shard_has_a_primary(&status));
    }
}

/// Whether each shard's last probe found a primary.
fn every_shard_has_a_primary(status: &StoreStatus) -> bool {
    status
        .shards
        .iter()
        .all(|shard| shard.nodes.iter().any(|node| node.role == "primary"))
}

#[cfg(test)]
mod tests {
    use courier_cluster::store_admin::{NodeStatus, ShardStatus};

    use super::*;

    fn shard(roles: &[&str]) -> ShardStatus {
        ShardStatus {
            name: "a".into(),
            ready: true,
            buckets: 1024,
            ranges: vec!["0-1023".into()],
            nodes: roles
                .iter()
                .map(|role| NodeStatus {
                    host: "h:5432".into(),
                    role: (*role).into(),
                    readable: false,
                    lag_ms: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_shard_without_a_primary_blocks() {
        let mut status = StoreStatus::default();
        assert!(every_shard_has_a_primary(&status), "no shard: memory");
        status.shards = vec![shard(&["primary", "standby"]), shard(&["down", "standby"])];
        assert!(!every_shard_has_a_primary(&status));
        status.shards[1] = shard(&["standby", "primary"]);
        assert!(every_shard_has_a_primary(&status));
    }
}
