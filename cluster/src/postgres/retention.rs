//! Retention: messages older than the configured age and dedup keys past
//! their window are deleted, in bounded chunks, on each shard's primary.
//!
//! Every logic runs this loop, but a transaction-level advisory lock lets
//! only one of them delete on a shard at a time; the others skip that
//! round. Deleting old rows moves each stream's oldest held seq forward,
//! which readers see as `first_seq` (and as a `gap` when they ask for
//! something older).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::shard::Shard;
use crate::Result;

/// Rows one statement deletes.
const CHUNK: i64 = 5_000;
/// Chunks one round deletes at most, so a huge backlog is spread out.
const MAX_CHUNKS: usize = 200;

/// Deletes expired rows on `shard` every `every` until `stop`.
pub(crate) async fn sweep(shard: Arc<Shard>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sweep_once(&shard).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::debug!(shard = %shard.name, deleted, "retention deleted expired rows");
                metrics::counter!("courier_store_expired_rows_total", "shard" => shard.name.clone())
                    .increment(deleted);
            }
            Err(e) => tracing::warn!(shard = %shard.name, error = %e, "retention sweep failed"),
        }
    }
}

/// One round: returns the rows deleted.
pub(crate) async fn sweep_once(shard: &Shard) -> Result<u64> {
    let retention = shard.opts.inbox.retention;
    let mut deleted = 0;
    for _ in 0..MAX_CHUNKS {
        let mut round = delete_chunk(shard, DEDUP, None).await?;
        if !retention.is_zero() {
            let secs = retention.as_secs_f64();
            round += delete_chunk(shard, MESSAGES, Some(secs)).await?;
        }
        deleted += round;
        if round < u64::try_from(CHUNK).unwrap_or(u64::MAX) {
            break;
        }
    }
    Ok(deleted)
}

/// Deletes up to [`CHUNK`] rows with `statement` if no other logic is
/// sweeping this shard right now.
async fn delete_chunk(shard: &Shard, statement: &str, age_secs: Option<f64>) -> Result<u64> {
    let mut conn = shard.primary().await?;
    let run = async {
        let tx = conn.transaction().await?;
        let row = tx
            .query_one("SELECT pg_try_advisory_xact_lock(1131, 0)", &[])
            .await?;
        let ours: bool = row.try_get(0)?;
        if !ours {
            return Ok(0);
        }
        let n = match age_secs {
            Some(secs) => tx.execute(statement, &[&secs, &CHUNK]).await?,
            None => tx.execute(statement, &[&CHUNK]).await?,
        };
        tx.commit().await?;
        Ok(n)
    };
    let outcome = tokio::time::timeout(shard.opts.statement_timeout, run).await;
    shard.settle(conn, outcome)
}

const DEDUP: &str = "
DELETE FROM courier_dedup WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM courier_dedup WHERE expires_at < now() LIMIT $1))";

const MESSAGES: &str = "
DELETE FROM courier_messages WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM courier_messages
     WHERE stored_at < now() - $1 * interval '1 second' LIMIT $2))";
