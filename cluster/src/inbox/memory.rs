//! In-process message store: the `memory://` backend of `courier up` and of
//! tests.
//!
//! One table of streams behind a [`parking_lot::Mutex`]; every critical
//! section is a few map and deque operations on one stream. Ages are
//! measured with [`tokio::time::Instant`], so tests can drive them with
//! paused time. Streams untouched for their `max_age` and expired dedup keys
//! are purged by a sweep at most once per minute of writes.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_proto::with_position;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{
    new_epoch, Appended, Head, Inbox, InboxOptions, NewMessage, Page, Start, Stream, StreamLimits,
};
use crate::Result;

/// How often the table is swept of expired streams and dedup keys.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// In-process message store. See the module docs.
#[derive(Debug)]
pub struct MemoryInbox {
    opts: InboxOptions,
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    streams: HashMap<StreamKey, StreamState>,
    /// (stream, dedup key) -> (seq, epoch, expires)
    dedup: HashMap<(StreamKey, String), (u64, u64, Instant)>,
    next_sweep: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum StreamKey {
    User(String),
    Room(String),
}

impl From<Stream<'_>> for StreamKey {
    fn from(s: Stream<'_>) -> Self {
        match s {
            Stream::User(uid) => StreamKey::User(uid.to_owned()),
            Stream::Room(room) => StreamKey::Room(room.to_owned()),
        }
    }
}

#[derive(Debug)]
struct StreamState {
    epoch: u64,
    last_seq: u64,
    /// (epoch, seq) the user acknowledged.
    acked: Option<(u64, u64)>,
    /// (seq, stored at, message), oldest first.
    held: VecDeque<(u64, Instant, Bytes)>,
    touched: Instant,
}

impl StreamState {
    fn new(now: Instant) -> Self {
        Self {
            epoch: new_epoch(),
            last_seq: 0,
            acked: None,
            held: VecDeque::new(),
            touched: now,
        }
    }

    fn trim(&mut self, limits: StreamLimits, now: Instant) {
        while self.held.len() > limits.max_messages {
            self.held.pop_front();
        }
        while self
            .held
            .front()
            .is_some_and(|(_, at, _)| now.saturating_duration_since(*at) >= limits.max_age)
        {
            self.held.pop_front();
        }
    }

    fn head(&self) -> Head {
        Head {
            epoch: self.epoch,
            last_seq: self.last_seq,
            first_seq: self.held.front().map_or(0, |(seq, _, _)| *seq),
        }
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
    /// The live state of `key`, forgetting one untouched for `max_age`.
    fn live(
        &mut self,
        key: &StreamKey,
        limits: StreamLimits,
        now: Instant,
    ) -> Option<&mut StreamState> {
        let expired = self
            .streams
            .get(key)
            .is_some_and(|s| now.saturating_duration_since(s.touched) >= limits.max_age);
        if expired {
            self.streams.remove(key);
        }
        self.streams.get_mut(key)
    }

    fn maybe_sweep(&mut self, opts: &InboxOptions, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        self.streams.retain(|key, s| {
            let limits = match key {
                StreamKey::User(_) => opts.inbox,
                StreamKey::Room(_) => opts.room,
            };
            now.saturating_duration_since(s.touched) < limits.max_age
        });
        self.dedup.retain(|_, (_, _, expires)| *expires > now);
    }
}

#[async_trait]
impl Inbox for MemoryInbox {
    async fn append(&self, stream: Stream<'_>, message: NewMessage<'_>) -> Result<Appended> {
        let now = Instant::now();
        let limits = self.opts.limits(stream);
        let key = StreamKey::from(stream);
        let mut table = self.table.lock();
        table.maybe_sweep(&self.opts, now);
        if let Some(dedup) = message.dedup {
            let id = (key.clone(), dedup.to_owned());
            if let Some((seq, epoch, expires)) = table.dedup.get(&id) {
                if *expires > now {
                    return Ok(Appended {
                        seq: *seq,
                        epoch: *epoch,
                        repeat: true,
                    });
                }
            }
        }
        // Forgets the stream if it expired, then starts a new one if needed.
        table.live(&key, limits, now);
        let state = table
            .streams
            .entry(key.clone())
            .or_insert_with(|| StreamState::new(now));
        state.last_seq += 1;
        state.touched = now;
        let (seq, epoch) = (state.last_seq, state.epoch);
        state.held.push_back((seq, now, message.message.clone()));
        state.trim(limits, now);
        if let Some(dedup) = message.dedup {
            let expires = now + self.opts.dedup_window;
            table
                .dedup
                .insert((key, dedup.to_owned()), (seq, epoch, expires));
        }
        Ok(Appended {
            seq,
            epoch,
            repeat: false,
        })
    }

    async fn read(
        &self,
        stream: Stream<'_>,
        start: Start,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page> {
        let now = Instant::now();
        let limits = self.opts.limits(stream);
        let key = StreamKey::from(stream);
        let mut table = self.table.lock();
        let Some(state) = table.live(&key, limits, now) else {
            // Nothing stored (or forgotten): a reader with an epoch is told.
            let reset = matches!(start, Start::Position { epoch, .. } if epoch != 0);
            return Ok(Page {
                reset,
                ..Page::default()
            });
        };
        state.trim(limits, now);
        let (after, reset) = match start {
            Start::Acked => match state.acked {
                Some((epoch, seq)) if epoch == state.epoch => (seq, false),
                _ => (0, false),
            },
            Start::Position {
                epoch: 0,
                after_seq,
            } => (after_seq, false),
            Start::Position { epoch, .. } if epoch != state.epoch => (0, true),
            Start::Position { after_seq, .. } if after_seq > state.last_seq => {
                // The reader saw seqs this store never recorded: it lost
                // writes. A new epoch tells every device.
                state.epoch = new_epoch();
                (0, true)
            }
            Start::Position { after_seq, .. } => (after_seq, false),
        };
        let head = state.head();
        let next_held = if head.first_seq == 0 {
            head.last_seq + 1
        } else {
            head.first_seq
        };
        let gap = !reset && after + 1 < next_held;
        let mut messages = Vec::new();
        let mut used = 0usize;
        for (seq, _, message) in state.held.iter().filter(|(seq, _, _)| *seq > after) {
            if messages.len() >= limit || (used > 0 && used + message.len() > max_bytes) {
                break;
            }
            used += message.len();
            messages.push(with_position(message, *seq, head.epoch));
        }
        Ok(Page {
            head,
            messages,
            gap,
            reset,
        })
    }

    async fn ack(&self, uid: &str, epoch: u64, seq: u64) -> Result<()> {
        let now = Instant::now();
        let key = StreamKey::User(uid.to_owned());
        let mut table = self.table.lock();
        let Some(state) = table.live(&key, self.opts.inbox, now) else {
            return Ok(());
        };
        if epoch != state.epoch {
            return Ok(());
        }
        let seq = seq.min(state.last_seq);
        let current = match state.acked {
            Some((e, s)) if e == epoch => s,
            _ => 0,
        };
        if seq > current {
            state.acked = Some((epoch, seq));
        }
        Ok(())
    }
}
