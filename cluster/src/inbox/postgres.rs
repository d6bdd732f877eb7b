//! The message store on sharded PostgreSQL ([`PgStore`]).
//!
//! Appends and acks go through the shard's group commit; a message's seq is
//! assigned in the transaction that stores it (`courier_write`). A read
//! takes the stream's head from the primary (so a page never ends before
//! what a client was promised), then the messages from a standby within the
//! lag bound; if that standby has not replayed the newest of them yet, the
//! rest comes from the primary.

use async_trait::async_trait;
use courier_proto::client::StreamHead;
use courier_proto::{with_position, Position};

use super::{
    backward_from, backward_gap, first_held, forward_from, forward_gap, missing_stream, new_epoch,
    within_budget, Appended, Forward, Inbox, NewMessage, Page, Start, Stream,
};
use crate::postgres::batch::{Write, Written};
use crate::postgres::routing::bucket_of;
use crate::postgres::shard::Shard;
use crate::postgres::{HeadRow, PgStore, Routed};
use crate::Result;

#[async_trait]
impl Inbox for PgStore {
    async fn append(&self, stream: Stream<'_>, message: NewMessage<'_>) -> Result<Appended> {
        let epoch = new_epoch();
        let write = || Write::Append {
            body: message.message.clone(),
            dedup: message.dedup.map(str::to_owned),
            new_epoch: epoch,
        };
        Ok(match self.write(&stream.key(), write).await? {
            Written::Repeat(at) => Appended { at, repeat: true },
            Written::Done(at) => Appended { at, repeat: false },
            Written::Moved => {
                return Err(crate::Error::corrupt("postgres", "a move left unrouted"))
            }
        })
    }

    async fn read(
        &self,
        stream: Stream<'_>,
        start: Start,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page> {
        let key = stream.key();
        self.routed(&key, |handle, bucket| {
            let key = &key;
            async move { read_on(&handle.shard, key, bucket, start, limit, max_bytes).await }
        })
        .await
    }

    async fn ack(&self, uid: &str, at: Position) -> Result<()> {
        self.write(&Stream::User(uid).key(), || Write::Ack { at })
            .await
            .map(drop)
    }

    async fn heads(&self, streams: &[Stream<'_>]) -> Result<Vec<StreamHead>> {
        let keys: Vec<String> = streams.iter().map(Stream::key).collect();
        let mut heads: Vec<Option<StreamHead>> = vec![None; keys.len()];
        // One query per shard for the streams the table routes there.
        let mut by_shard: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        for (i, key) in keys.iter().enumerate() {
            if let Some(shard) = self.shard_of(key) {
                by_shard.entry(shard).or_default().push(i);
            }
        }
        for (name, indexes) in by_shard {
            let Ok(handle) = self.handle_ready(&name) else {
                continue;
            };
            let names: Vec<String> = indexes.iter().map(|i| keys[*i].clone()).collect();
            let buckets: Vec<u32> = names.iter().map(|k| bucket_of(k)).collect();
            match handle.shard.heads(&names, &buckets).await {
                Ok(rows) => {
                    for (i, row) in indexes.into_iter().zip(rows) {
                        heads[i] = row.map(|r| head_of(&r));
                    }
                }
                Err(e) => tracing::debug!(shard = %name, error = %e, "heads unavailable"),
            }
        }
        // What a shard refused (a bucket mid-move), one by one, routed; a
        // stream whose shard cannot answer gets an empty head (epoch 0,
        // which a client ignores), so one shard down does not fail the
        // others' streams.
        let mut out = Vec::with_capacity(keys.len());
        for (key, head) in keys.iter().zip(heads) {
            out.push(match head {
                Some(head) => head,
                None => {
                    let row = self
                        .routed(key, |handle, bucket| async move {
                            handle.shard.head(key, bucket).await
                        })
                        .await;
                    match row {
                        Ok(row) => head_of(&row),
                        Err(e) => {
                            tracing::debug!(stream = %key, error = %e, "no head for a stream");
                            StreamHead::default()
                        }
                    }
                }
            });
        }
        Ok(out)
    }
}

fn head_of(row: &HeadRow) -> StreamHead {
    StreamHead {
        epoch: row.epoch,
        last_seq: row.last_seq,
        first_seq: row.first_seq,
    }
}

/// A page of `stream` on `shard`. See the module docs.
async fn read_on(
    shard: &Shard,
    stream: &str,
    bucket: u32,
    start: Start,
    limit: usize,
    max_bytes: usize,
) -> Result<Routed<Page>> {
    let Routed::Done(row) = shard.head(stream, bucket).await? else {
        return Ok(Routed::Moved);
    };
    if !row.exists {
        return Ok(Routed::Done(missing_stream(start)));
    }
    let head = head_of(&row);
    let read = Read {
        shard,
        stream,
        bucket,
        limit,
        max_bytes,
    };
    let acked = Position::new(row.ack_epoch, row.ack_seq);
    match start {
        Start::Before(before) => read.back(head, before).await,
        _ => match forward_from(start, &head, acked) {
            Forward::After(after) => read.forward(head, after).await,
            Forward::Reset => read.newest(head).await,
            Forward::NewEpoch => {
                // The user's device showed seqs this store never recorded:
                // it lost writes (a restore from an old backup). A new
                // epoch tells every device.
                let seen = match start {
                    Start::Resume(p) => p.seq,
                    _ => 0,
                };
                let Routed::Done(()) = shard
                    .new_epoch(stream, bucket, head.epoch, seen, new_epoch())
                    .await?
                else {
                    return Ok(Routed::Moved);
                };
                let Routed::Done(row) = shard.head(stream, bucket).await? else {
                    return Ok(Routed::Moved);
                };
                read.newest(head_of(&row)).await
            }
        },
    }
}

/// One read's stream and bounds.
struct Read<'a> {
    shard: &'a Shard,
    stream: &'a str,
    bucket: u32,
    limit: usize,
    max_bytes: usize,
}

impl Read<'_> {
    /// The oldest messages after `after`.
    async fn forward(&self, head: StreamHead, after: u64) -> Result<Routed<Page>> {
        let gap = forward_gap(after, &head);
        if self.limit == 0 || after >= head.last_seq {
            return Ok(Routed::Done(Page {
                head,
                messages: Vec::new(),
                gap,
                reset: false,
            }));
        }
        let end = head.last_seq + 1;
        let from = after.max(first_held(&head).saturating_sub(1));
        let want = usize::try_from(head.last_seq - from.min(head.last_seq))
            .unwrap_or(usize::MAX)
            .min(self.limit);
        let Routed::Done(mut rows) = self.rows((after, end), want, false, true).await? else {
            return Ok(Routed::Moved);
        };
        let used: usize = rows.iter().map(|(_, body)| body.len()).sum();
        if rows.len() < want && used < self.max_bytes {
            // The standby has not replayed the rest yet.
            let last = rows.last().map_or(after, |(seq, _)| *seq);
            let Routed::Done(rest) = self
                .rows((last, end), want - rows.len(), false, false)
                .await?
            else {
                return Ok(Routed::Moved);
            };
            rows.extend(rest);
        }
        let messages = within_budget(rows, |(_, body)| body.len(), self.limit, self.max_bytes)
            .into_iter()
            .map(|(seq, body)| with_position(&body, seq, head.epoch))
            .collect();
        Ok(Routed::Done(Page {
            head,
            messages,
            gap,
            reset: false,
        }))
    }

    /// The newest messages below `before` (paging back).
    async fn back(&self, head: StreamHead, before: Position) -> Result<Routed<Page>> {
        let (end, reset) = backward_from(before, &head);
        if self.limit == 0 {
            return Ok(Routed::Done(Page {
                head,
                messages: Vec::new(),
                gap: false,
                reset,
            }));
        }
        let Routed::Done(mut rows) = self.rows((0, end), self.limit, true, true).await? else {
            return Ok(Routed::Moved);
        };
        // A standby that lags lacks the newest rows: read from the primary.
        let top = end.saturating_sub(1);
        if top >= first_held(&head) && rows.first().map(|(seq, _)| *seq) != Some(top) {
            let Routed::Done(fresh) = self.rows((0, end), self.limit, true, false).await? else {
                return Ok(Routed::Moved);
            };
            rows = fresh;
        }
        let mut taken = within_budget(rows, |(_, body)| body.len(), self.limit, self.max_bytes);
        taken.reverse();
        let gap = backward_gap(taken.first().map(|(seq, _)| *seq), end, &head);
        let messages = taken
            .into_iter()
            .map(|(seq, body)| with_position(&body, seq, head.epoch))
            .collect();
        Ok(Routed::Done(Page {
            head,
            messages,
            gap,
            reset,
        }))
    }

    /// The newest page, for a reader told its epoch is not the stream's.
    async fn newest(&self, head: StreamHead) -> Result<Routed<Page>> {
        Ok(match self.back(head, Position::NONE).await? {
            Routed::Done(page) => Routed::Done(Page {
                gap: false,
                reset: true,
                ..page
            }),
            Routed::Moved => Routed::Moved,
        })
    }

    /// Rows of the stream with `after < seq < before`, at most `limit` and
    /// about `max_bytes` of them.
    async fn rows(
        &self,
        range: (u64, u64),
        limit: usize,
        newest_first: bool,
        from_standby: bool,
    ) -> Result<Routed<Vec<(u64, bytes::Bytes)>>> {
        self.shard
            .messages(
                self.stream,
                self.bucket,
                range,
                (limit, self.max_bytes),
                newest_first,
                from_standby,
            )
            .await
    }
}
