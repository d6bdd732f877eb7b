//! Availability probing of a shard's nodes.
//!
//! Every `probe_interval` each logic stamps the time on its shard's primary
//! (`courier_heartbeat`), then asks every node of the shard whether it is
//! in recovery (a standby) and how old its copy of the newest stamp is:
//! that age is the node's replay lag. What it finds goes to the read list
//! ([`super::nodes`]), the status and the metrics.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::nodes::{Node, Role};
use super::shard::Shard;
use super::sql::{bounded, pg_error, pg_failure};
use crate::Result;

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
        let probes = shard.nodes.each().iter().map(|node| check(&shard, node));
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
        let conn = node.pool().get().await.map_err(|e| pg_failure(&e))?;
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
            (
                Role::Standby,
                lag_ms <= millis(shard.opts.max_read_lag),
                lag_ms,
            )
        }
        Ok(Ok((true, None))) => (Role::Standby, false, u64::MAX),
        Ok(Ok((false, _))) => (Role::Primary, false, u64::MAX),
        Ok(Err(e)) => {
            tracing::debug!(shard = %shard.name, node = node.host(), error = %e, "node did not answer the probe");
            (Role::Down, false, u64::MAX)
        }
        Err(_) => (Role::Down, false, u64::MAX),
    };
    let was = node.record(role, readable, lag_ms);
    if was != readable {
        if readable {
            tracing::info!(shard = %shard.name, node = node.host(), lag_ms, "standby joins the read list");
        } else {
            tracing::info!(shard = %shard.name, node = node.host(), "node leaves the read list (down, lagging or primary)");
        }
    }
    let lag_seconds = if lag_ms == u64::MAX {
        f64::NAN
    } else {
        lag_ms as f64 / 1000.0
    };
    let labels = [
        ("shard", shard.nodes.shard().to_owned()),
        ("node", node.host().to_owned()),
    ];
    metrics::gauge!("courier_store_replay_lag_seconds", &labels).set(lag_seconds);
    metrics::gauge!("courier_store_node_readable", &labels).set(if readable { 1.0 } else { 0.0 });
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
