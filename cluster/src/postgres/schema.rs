//! Preparing a shard: the schema (`schema.sql`), then a row for each bucket
//! the routing table sends there that the shard has no row for yet.
//!
//! Both steps are idempotent and safe under concurrent logics: the schema
//! is applied under a transaction-level advisory lock, and bucket rows are
//! only ever inserted where none exists. A bucket that was ever moved has
//! rows on both its shards, so a logic with a stale table cannot mark a
//! moved bucket as owned again: only a bucket no shard ever held is seeded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::routing::{Routes, BUCKETS};
use super::shard::{to_i32, Shard};
use crate::{Error, Result};

const SCHEMA: &str = include_str!("schema.sql");

/// Longest pause between attempts at a shard that is not reachable.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Applies the schema to `shard` and seeds the buckets routed to it.
pub(crate) async fn prepare(shard: &Shard, routes: &Routes) -> Result<()> {
    let table = routes
        .table()
        .ok_or_else(|| Error::unavailable("postgres", "no routing table"))?;
    let mine: Vec<i32> = (0..BUCKETS)
        .filter(|b| table.shard_of(*b) == Some(shard.name.as_str()))
        .map(to_i32)
        .collect();
    let mut conn = shard.primary().await?;
    let run = async {
        let tx = conn.transaction().await?;
        tx.batch_execute("SELECT pg_advisory_xact_lock(1130, -1)")
            .await?;
        tx.batch_execute(SCHEMA).await?;
        tx.execute(
            "INSERT INTO courier_buckets (bucket, state)
             SELECT b, 'owned' FROM unnest($1::int4[]) AS b
             ON CONFLICT (bucket) DO NOTHING",
            &[&mine],
        )
        .await?;
        tx.commit().await
    };
    let outcome = tokio::time::timeout(shard.opts.statement_timeout, run).await;
    shard.settle(conn, outcome)?;
    tracing::info!(shard = %shard.name, buckets = mine.len(), "shard prepared");
    Ok(())
}

/// Retries [`prepare`] with backoff until it works (then sets `ready`) or
/// `stop` fires.
pub(crate) async fn prepare_until_ready(
    shard: Arc<Shard>,
    routes: Routes,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut pause = Duration::from_millis(200);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        match prepare(&shard, &routes).await {
            Ok(()) => {
                ready.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                tracing::debug!(shard = %shard.name, error = %e, "shard still not reachable");
                pause = (pause * 2).min(MAX_RETRY);
            }
        }
    }
}
