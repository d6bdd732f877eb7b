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
    backward_from, backward_gap, forward_from, forward_gap, missing_stream, new_epoch,
    within_budget, Appended, Inbox, NewMessage, Page, Start, Stream,
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
            let rows = handle.shard.heads(&names, &buckets).await?;
            for (i, row) in indexes.into_iter().zip(rows) {
                heads[i] = row.map(|r| head_of(&r));
            }
        }
        // What a shard refused (a bucket mid-move), one by one, routed.
        let mut out = Vec::with_capacity(keys.len());
        for (key, head) in keys.iter().zip(heads) {
            out.push(match head {
                Some(head) => head,
                None => {
                    let row = self
                        .routed(key, |handle, bucket| async move {
                            handle.shard.head(key, bucket).await
                        })
                        .await?;
                    head_of(&row)
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

/// The first seq a stream still holds, or the one after its last.
fn first_held(head: &StreamHead) -> u64 {
    if head.first_seq == 0 {
        head.last_seq + 1
    } else {
        head.first_seq
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
    let mut head = head_of(&row);
    if let Start::Before(before) = start {
        let (end, reset) = backward_from(before, &head);
        if limit == 0 {
            return Ok(Routed::Done(Page {
                head,
                messages: Vec::new(),
                gap: false,
                reset,
            }));
        }
        let fetch = |standby| shard.messages(stream, bucket, (0, end), limit, true, standby);
        let Routed::Done(mut rows) = fetch(true).await? else {
            return Ok(Routed::Moved);
        };
        // A standby that lags lacks the newest rows: read from the primary.
        let top = end.saturating_sub(1);
        if top >= first_held(&head) && rows.first().map(|(seq, _)| *seq) != Some(top) {
            let Routed::Done(fresh) = fetch(false).await? else {
                return Ok(Routed::Moved);
            };
            rows = fresh;
        }
        let mut taken = within_budget(rows, |(_, body)| body.len(), limit, max_bytes);
        taken.reverse();
        let gap = backward_gap(taken.first().map(|(seq, _)| *seq), end, &head);
        let messages = taken
            .into_iter()
            .map(|(seq, body)| with_position(&body, seq, head.epoch))
            .collect();
        return Ok(Routed::Done(Page {
            head,
            messages,
            gap,
            reset,
        }));
    }
    let acked = Position::new(row.ack_epoch, row.ack_seq);
    let (after, reset) = match forward_from(start, &head, acked) {
        Some(from) => from,
        None => {
            // The reader showed seqs this store never recorded: it lost
            // writes (a restore from an old backup). A new epoch tells
            // every device.
            let seen = match start {
                Start::After(p) => p.seq,
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
            head = head_of(&row);
            (0, true)
        }
    };
    let gap = !reset && forward_gap(after, &head);
    if limit == 0 || after >= head.last_seq {
        return Ok(Routed::Done(Page {
            head,
            messages: Vec::new(),
            gap,
            reset,
        }));
    }
    let end = head.last_seq + 1;
    let from = after.max(first_held(&head).saturating_sub(1));
    let want = usize::try_from(head.last_seq - from.min(head.last_seq))
        .unwrap_or(usize::MAX)
        .min(limit);
    let Routed::Done(mut rows) = shard
        .messages(stream, bucket, (after, end), want, false, true)
        .await?
    else {
        return Ok(Routed::Moved);
    };
    if rows.len() < want {
        // The standby has not replayed the rest yet.
        let last = rows.last().map_or(after, |(seq, _)| *seq);
        let Routed::Done(rest) = shard
            .messages(stream, bucket, (last, end), want - rows.len(), false, false)
            .await?
        else {
            return Ok(Routed::Moved);
        };
        rows.extend(rest);
    }
    let messages = within_budget(rows, |(_, body)| body.len(), limit, max_bytes)
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
