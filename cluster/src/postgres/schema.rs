//! Preparing a shard: the schema (`schema.sql`), applied under a
//! transaction-level advisory lock so concurrent logics do not race, and
//! idempotent.
//!
//! Which buckets a shard serves is recorded in the shard itself
//! (`courier_buckets`). A bucket that no shard has any row for is new: it
//! is *seeded* as owned by the shard the routing table sends it to. A
//! bucket that was ever served or moved has rows, so a logic with a stale
//! table can never mark a bucket as owned a second time; and a lost table
//! is rebuilt from these rows ([`owners`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use courier_runtime::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use super::routing::{RoutingTable, BUCKETS};
use super::shard::{pg_error, to_i32, to_u64, Shard};
use crate::Result;

const SCHEMA: &str = include_str!("schema.sql");

/// Longest pause between attempts at a shard that is not reachable.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Applies the schema to `shard`.
pub(crate) async fn prepare(shard: &Shard) -> Result<()> {
    let mut conn = shard.primary().await?;
    let run = async {
        let tx = conn.transaction().await?;
        tx.batch_execute("SELECT pg_advisory_xact_lock(1130, -1)")
            .await?;
        tx.batch_execute(SCHEMA).await?;
        tx.commit().await
    };
    let outcome = tokio::time::timeout(shard.opts.statement_timeout, run).await;
    shard.settle(conn, outcome)?;
    tracing::info!(shard = %shard.name, "shard prepared");
    Ok(())
}

/// Retries [`prepare`] with backoff until it works (then sets `ready`) or
/// `stop` fires.
pub(crate) async fn prepare_until_ready(
    shard: Arc<Shard>,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut pauses = Backoff::new(Duration::from_millis(200), MAX_RETRY);
    loop {
        if !pauses.wait_or(&stop).await {
            return;
        }
        match prepare(&shard).await {
            Ok(()) => {
                ready.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                tracing::debug!(shard = %shard.name, error = %e, "shard still not reachable");
            }
        }
    }
}

/// The buckets `shard` has a row for, with their states.
async fn rows(shard: &Shard) -> Result<Vec<(u32, String)>> {
    let rows = shard
        .query("SELECT bucket, state FROM courier_buckets", &[])
        .await?;
    rows.iter()
        .map(|r| {
            let bucket: i32 = r.try_get(0).map_err(pg_error)?;
            let state: String = r.try_get(1).map_err(pg_error)?;
            Ok((
                u32::try_from(to_u64(i64::from(bucket))).unwrap_or(u32::MAX),
                state,
            ))
        })
        .collect()
}

/// Which shard owns each bucket some shard serves: `(bucket, shard)`.
pub(crate) async fn owners(shards: &BTreeMap<String, Arc<Shard>>) -> Result<Vec<(u32, String)>> {
    let mut owned = Vec::new();
    for (name, shard) in shards {
        for (bucket, state) in rows(shard).await? {
            if matches!(state.as_str(), "owned" | "fenced") {
                owned.push((bucket, name.clone()));
            }
        }
    }
    Ok(owned)
}

/// Seeds every bucket that no shard has a row for as owned by the shard
/// `table` routes it to. Needs every shard: a bucket's rows may be on any.
pub(crate) async fn seed_new_buckets(
    shards: &BTreeMap<String, Arc<Shard>>,
    table: &RoutingTable,
) -> Result<()> {
    let mut known = HashSet::new();
    for shard in shards.values() {
        known.extend(rows(shard).await?.into_iter().map(|(bucket, _)| bucket));
    }
    for (name, shard) in shards {
        let new: Vec<i32> = (0..BUCKETS)
            .filter(|b| !known.contains(b) && table.shard_of(*b) == Some(name.as_str()))
            .map(to_i32)
            .collect();
        if new.is_empty() {
            continue;
        }
        shard
            .execute(
                "INSERT INTO courier_buckets (bucket, state)
                 SELECT b, 'owned' FROM unnest($1::int4[]) AS b
                 ON CONFLICT (bucket) DO NOTHING",
                &[&new],
            )
            .await?;
        tracing::info!(shard = %name, buckets = new.len(), "new buckets seeded");
    }
    Ok(())
}
