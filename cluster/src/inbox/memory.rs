//! In-process message store: the `memory://` backend of `courier up` and of
//! tests.
//!
//! One table of streams behind a [`parking_lot::Mutex`]; every critical
//! section is a few map and deque operations on one stream. Everything is
//! held in this process's memory for the retention (forever when it is
//! zero), so it suits a laptop and tests, not a long-lived deployment.
//! Ages are measured with [`tokio::time::Instant`], so tests can drive them
//! with paused time. Expired messages go as their stream is touched, and a
//! sweep at most once per minute of writes drops expired dedup keys.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_proto::client::StreamHead;
use courier_proto::{with_position, Position};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{
    backward_from, backward_gap, forward_from, forward_gap, missing_stream, new_epoch,
    within_budget, Appended, Forward, Inbox, InboxOptions, NewMessage, Page, Start, Stream,
};
use crate::Result;

/// How often the table is swept of expired dedup keys.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// In-process message store. See the module docs.
#[derive(Debug)]
pub struct MemoryInbox {
    opts: InboxOptions,
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    streams: HashMap<String, StreamState>,
    /// (stream key, dedup key) -> (original position, expires)
    dedup: HashMap<(String, String), (Position, Instant)>,
    next_sweep: Instant,
}

#[derive(Debug)]
struct StreamState {
    epoch: u64,
    last_seq: u64,
    /// The position the user acknowledged.
    acked: Position,
    /// (seq, stored at, message), oldest first.
    held: VecDeque<(u64, Instant, Bytes)>,
}

impl StreamState {
    fn new() -> Self {
        Self {
            epoch: new_epoch(),
            last_seq: 0,
            acked: Position::NONE,
            held: VecDeque::new(),
        }
    }

    /// Drops messages older than `retention` (zero: none).
    fn expire(&mut self, retention: Duration, now: Instant) {
        if retention.is_zero() {
            return;
        }
        while self
            .held
            .front()
            .is_some_and(|(_, at, _)| now.saturating_duration_since(*at) >= retention)
        {
            self.held.pop_front();
        }
    }

    fn head(&self) -> StreamHead {
        StreamHead {
            epoch: self.epoch,
            last_seq: self.last_seq,
            first_seq: self.held.front().map_or(0, |(seq, _, _)| *seq),
        }
    }

    /// The newest messages below `before` (paging back).
    fn back(&self, before: Position, limit: usize, max_bytes: usize) -> Page {
        let head = self.head();
        let (end, reset) = backward_from(before, &head);
        let end_index = self.index_of(end).min(self.held.len());
        let newest_first = self.held.range(..end_index).rev();
        let mut taken = within_budget(newest_first, |(_, _, m)| m.len(), limit, max_bytes);
        taken.reverse();
        let gap = backward_gap(taken.first().map(|(s, _, _)| *s), end, &head);
        let messages = taken
            .into_iter()
            .map(|(seq, _, m)| with_position(m, *seq, head.epoch))
            .collect();
        Page {
            head,
            messages,
            gap,
            reset,
        }
    }

    /// The newest page, for a reader told its epoch is not the stream's.
    fn newest(&self, limit: usize, max_bytes: usize) -> Page {
        Page {
            gap: false,
            reset: true,
            ..self.back(Position::NONE, limit, max_bytes)
        }
    }

    /// The held message with `seq`, if any (seqs are held in order, without
    /// gaps, from the first held).
    fn index_of(&self, seq: u64) -> usize {
        let first = self.held.front().map_or(0, |(s, _, _)| *s);
        usize::try_from(seq.saturating_sub(first)).unwrap_or(usize::MAX)
    }
}

impl MemoryInbox {
    /// An empty store with these bounds.
    pub fn new(opts: InboxOptions) -> Self {
        Self {
            opts,
            table: Mutex::new(Table {
                streams: HashMap::new(),
                dedup: HashMap::new(),
                next_sweep: Instant::now() + SWEEP_EVERY,
            }),
        }
    }
}

impl Table {
    fn maybe_sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        self.dedup.retain(|_, (_, expires)| *expires > now);
    }
}

#[async_trait]
impl Inbox for MemoryInbox {
    async fn append(&self, stream: Stream<'_>, message: NewMessage<'_>) -> Result<Appended> {
        let now = Instant::now();
        let key = stream.key();
        let mut table = self.table.lock();
        table.maybe_sweep(now);
        if let Some(dedup) = message.dedup {
            if let Some((at, expires)) = table.dedup.get(&(key.clone(), dedup.to_owned())) {
                if *expires > now {
                    return Ok(Appended {
                        at: *at,
                        repeat: true,
                    });
                }
            }
        }
        let state = table
            .streams
            .entry(key.clone())
            .or_insert_with(StreamState::new);
        state.last_seq += 1;
        let at = Position::new(state.epoch, state.last_seq);
        state.held.push_back((at.seq, now, message.message.clone()));
        state.expire(self.opts.retention, now);
        if let Some(dedup) = message.dedup {
            let expires = now + self.opts.dedup_window;
            table.dedup.insert((key, dedup.to_owned()), (at, expires));
        }
        Ok(Appended { at, repeat: false })
    }

    async fn read(
        &self,
        stream: Stream<'_>,
        start: Start,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page> {
        let now = Instant::now();
        let mut table = self.table.lock();
        let Some(state) = table.streams.get_mut(&stream.key()) else {
            return Ok(missing_stream(start));
        };
        state.expire(self.opts.retention, now);
        let head = state.head();
        let after = match start {
            Start::Before(before) => return Ok(state.back(before, limit, max_bytes)),
            _ => forward_from(start, &head, state.acked),
        };
        let after = match after {
            Forward::After(seq) => seq,
            Forward::Reset => return Ok(state.newest(limit, max_bytes)),
            Forward::NewEpoch => {
                // The user's device showed seqs this store never recorded:
                // it lost writes. A new epoch tells every device.
                state.epoch = new_epoch();
                return Ok(state.newest(limit, max_bytes));
            }
        };
        let gap = forward_gap(after, &head);
        let from = state.index_of(after.saturating_add(1));
        let messages = within_budget(
            state.held.range(from.min(state.held.len())..),
            |(_, _, m)| m.len(),
            limit,
            max_bytes,
        )
        .into_iter()
        .map(|(seq, _, m)| with_position(m, *seq, head.epoch))
        .collect();
        Ok(Page {
            head,
            messages,
            gap,
            reset: false,
        })
    }

    async fn ack(&self, uid: &str, at: Position) -> Result<()> {
        let mut table = self.table.lock();
        let Some(state) = table.streams.get_mut(&Stream::User(uid).key()) else {
            return Ok(());
        };
        if at.epoch != state.epoch {
            return Ok(());
        }
        let seq = at.seq.min(state.last_seq);
        let current = if state.acked.epoch == at.epoch {
            state.acked.seq
        } else {
            0
        };
        if seq > current {
            state.acked = Position::new(at.epoch, seq);
        }
        Ok(())
    }

    async fn heads(&self, streams: &[Stream<'_>]) -> Result<Vec<StreamHead>> {
        let now = Instant::now();
        let mut table = self.table.lock();
        Ok(streams
            .iter()
            .map(|s| match table.streams.get_mut(&s.key()) {
                Some(state) => {
                    state.expire(self.opts.retention, now);
                    state.head()
                }
                None => StreamHead::default(),
            })
            .collect())
    }
}
