//! Group commit: the appends and acks of every request in flight to one
//! shard go to its primary together, one transaction and one round trip
//! (`courier_write`) per batch.
//!
//! A shard has `commits_in_flight` write slots (1 by default). A batch
//! takes a slot, then everything queued up to `batch_max`; while every slot
//! is busy, callers queue and the next batch carries them all. So one
//! caller alone waits for no timer, and under load the commits per second
//! stay near what the slots allow while the items per commit grow. More
//! slots do not help: batches in flight together touch the same hot
//! streams, and each waits on the others' head-row locks until they commit.
//! The queue is bounded: past it, callers wait for room.
//!
//! If a batch fails (the primary went away, the statement timed out) every
//! item in it fails with `Unavailable`: whether the commit happened is
//! unknown, which is what idempotency keys are for.

use std::sync::Arc;

use bytes::Bytes;
use courier_proto::Position;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::shard::{pg_error, to_i32, to_i64, to_u64, Shard};
use crate::{Error, Result};

/// Items queued to one shard before callers wait.
const QUEUE: usize = 16 * 1024;

/// One write.
#[derive(Debug)]
pub(crate) enum Write {
    /// A new message; `new_epoch` is the epoch a new stream starts with.
    Append {
        body: Bytes,
        dedup: Option<String>,
        new_epoch: u64,
    },
    /// The user has read its inbox up to `at`.
    Ack { at: Position },
}

/// What one write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Stored (an append's position; an ack's own).
    Done(Position),
    /// A repeat of the dedup key: the original's position.
    Repeat(Position),
    /// The shard does not serve the bucket.
    Moved,
}

struct Item {
    stream: String,
    bucket: u32,
    write: Write,
    reply: oneshot::Sender<Result<Written>>,
}

/// The queue into a shard's group commit.
#[derive(Clone)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<Item>,
}

impl Batcher {
    /// Starts the group commit of `shard`; it ends when every `Batcher`
    /// clone is dropped.
    pub(crate) fn start(shard: Arc<Shard>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(commit_batches(shard, rx));
        Self { queue: tx }
    }

    /// Queues `write` to `stream` (in `bucket`) and waits for its commit.
    pub(crate) async fn write(&self, stream: String, bucket: u32, write: Write) -> Result<Written> {
        let (reply, done) = oneshot::channel();
        let item = Item {
            stream,
            bucket,
            write,
            reply,
        };
        self.queue.send(item).await.map_err(|_| Error::Closed)?;
        done.await.map_err(|_| Error::Closed)?
    }
}

async fn commit_batches(shard: Arc<Shard>, mut queue: mpsc::Receiver<Item>) {
    let slots = Arc::new(Semaphore::new(
        shard
            .opts
            .commits_in_flight
            .clamp(1, shard.opts.pool_size.max(1)),
    ));
    let max = shard.opts.batch_max.max(1);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut batch = Vec::with_capacity(max.min(64));
        batch.push(first);
        while batch.len() < max {
            match queue.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        tokio::spawn(commit(shard.clone(), batch, slot));
    }
}

/// Commits one batch and answers every item.
async fn commit(shard: Arc<Shard>, batch: Vec<Item>, _slot: OwnedSemaphorePermit) {
    metrics::histogram!("courier_store_batch_items", "shard" => shard.name.clone())
        .record(batch.len() as f64);
    let started = std::time::Instant::now();
    let result = run(&shard, &batch).await;
    metrics::histogram!("courier_store_commit_duration_seconds", "shard" => shard.name.clone())
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(results) => {
            for (item, result) in batch.into_iter().zip(results) {
                let _ = item.reply.send(result);
            }
        }
        Err(e) => {
            metrics::counter!("courier_store_batch_failures_total", "shard" => shard.name.clone())
                .increment(1);
            // Logic reports the failure each caller meets (rate-limited);
            // an outage fails every batch, and a line each would flood.
            tracing::debug!(shard = %shard.name, error = %e, items = batch.len(), "a write batch failed");
            let message = e.to_string();
            for item in batch {
                let _ = item.reply.send(Err(pg_error(&message)));
            }
        }
    }
}

async fn run(shard: &Shard, batch: &[Item]) -> Result<Vec<Result<Written>>> {
    let n = batch.len();
    let mut kinds = Vec::with_capacity(n);
    let mut streams = Vec::with_capacity(n);
    let mut buckets = Vec::with_capacity(n);
    let mut bodies: Vec<&[u8]> = Vec::with_capacity(n);
    let mut keys: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut epochs = Vec::with_capacity(n);
    let mut seqs = Vec::with_capacity(n);
    for item in batch {
        streams.push(item.stream.as_str());
        buckets.push(to_i32(item.bucket));
        match &item.write {
            Write::Append {
                body,
                dedup,
                new_epoch,
            } => {
                kinds.push(0i16);
                bodies.push(body.as_ref());
                keys.push(dedup.as_deref());
                epochs.push(to_i64(*new_epoch));
                seqs.push(0i64);
            }
            Write::Ack { at } => {
                kinds.push(1i16);
                bodies.push(&[]);
                keys.push(None);
                epochs.push(to_i64(at.epoch));
                seqs.push(to_i64(at.seq));
            }
        }
    }
    let ttl_ms = i64::try_from(shard.opts.inbox.dedup_window.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let rows = shard
        .query(
            "SELECT r_item, r_outcome, r_epoch, r_seq
               FROM courier_write($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &kinds, &streams, &buckets, &bodies, &keys, &epochs, &seqs, &ttl_ms,
            ],
        )
        .await?;
    let mut results: Vec<Result<Written>> = (0..n)
        .map(|_| {
            Err(Error::corrupt(
                "postgres",
                "a batch item without an outcome",
            ))
        })
        .collect();
    for row in rows {
        let item: i32 = row.try_get(0).map_err(pg_error)?;
        let outcome: i16 = row.try_get(1).map_err(pg_error)?;
        let at = Position::new(
            to_u64(row.try_get(2).map_err(pg_error)?),
            to_u64(row.try_get(3).map_err(pg_error)?),
        );
        let Some(slot) = usize::try_from(item.saturating_sub(1))
            .ok()
            .and_then(|i| results.get_mut(i))
        else {
            return Err(Error::corrupt(
                "postgres",
                format!("batch item {item} of {n}"),
            ));
        };
        *slot = Ok(match outcome {
            0 => Written::Done(at),
            1 => Written::Repeat(at),
            _ => Written::Moved,
        });
    }
    Ok(results)
}
