//! Room batching inside one comet's worker.
//!
//! Room messages for the same room accumulate until the batch holds
//! `room_batch_max` messages or its first message has waited
//! `room_batch_wait`, and never past `room_batch_bytes` (a message that
//! would overflow the batch sends it and opens the next), so a call stays
//! far below gRPC's message limit; then the batch becomes one `PushRoom`, which the comet
//! encodes once and writes to every member. Batches of different rooms fill
//! independently, so a burst spread over many rooms still batches.
//!
//! Order: messages of one room keep their order (they share one batch, and
//! batches of one room are sent in order). Batches of different rooms may
//! leave in a different order than their messages came; nothing orders two
//! rooms' messages anyway (they are different queue keys).
//!
//! Pure data with an explicit clock (`now`), so it is tested without time.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::ticket::Ticket;

/// Room messages that leave together in one `PushRoom`.
#[derive(Debug)]
pub(crate) struct RoomBatch {
    pub(crate) room: String,
    /// Encoded messages, in order.
    pub(crate) messages: Vec<Bytes>,
    /// One per message: finished when the comet answered.
    pub(crate) tickets: Vec<Ticket>,
    /// Bytes of `messages`.
    bytes: usize,
    seq: u64,
}

/// The open room batches of one comet.
#[derive(Debug)]
pub(crate) struct RoomBatches {
    max: usize,
    max_bytes: usize,
    wait: Duration,
    open: HashMap<String, RoomBatch>,
    /// Open batches by first arrival: (deadline, seq, room). An entry whose
    /// batch was sent early (full) is stale and skipped.
    deadlines: VecDeque<(Instant, u64, String)>,
    next_seq: u64,
}

impl RoomBatches {
    /// Batches of at most `max` messages (at least 1) and `max_bytes` bytes
    /// (a single larger message still leaves, alone), each waiting at most
    /// `wait` after its first message.
    pub(crate) fn new(max: usize, max_bytes: usize, wait: Duration) -> Self {
        Self {
            max: max.max(1),
            max_bytes,
            wait,
            open: HashMap::new(),
            deadlines: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Adds a message to its room's batch; returns a batch that is now full
    /// and must be sent: this room's batch with the message, or, when the
    /// message would take it past `max_bytes`, the batch before it (the
    /// message then opens the room's next batch).
    pub(crate) fn add(
        &mut self,
        room: String,
        message: Bytes,
        ticket: Ticket,
        now: Instant,
    ) -> Option<RoomBatch> {
        let overflowing = self
            .open
            .get(&room)
            .is_some_and(|b| b.bytes.saturating_add(message.len()) > self.max_bytes);
        if overflowing {
            let full = self.open.remove(&room);
            // A batch never holds `max` messages while open, so the new one
            // (one message) is not full yet.
            let opened = self.add(room, message, ticket, now);
            debug_assert!(opened.is_none());
            return full;
        }
        let batch = match self.open.entry(room) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.next_seq += 1;
                let seq = self.next_seq;
                self.deadlines
                    .push_back((now + self.wait, seq, e.key().clone()));
                let room = e.key().clone();
                e.insert(RoomBatch {
                    room,
                    messages: Vec::new(),
                    tickets: Vec::new(),
                    bytes: 0,
                    seq,
                })
            }
        };
        batch.bytes += message.len();
        batch.messages.push(message);
        batch.tickets.push(ticket);
        if batch.messages.len() >= self.max {
            // Take the name out rather than clone it: the batch leaves anyway.
            let room = std::mem::take(&mut batch.room);
            let mut full = self.open.remove(&room)?;
            full.room = room;
            Some(full)
        } else {
            None
        }
    }

    /// Drops deadline entries of batches that are no longer open.
    fn skip_stale(&mut self) {
        while let Some((_, seq, room)) = self.deadlines.front() {
            if self.open.get(room).is_some_and(|b| b.seq == *seq) {
                break;
            }
            self.deadlines.pop_front();
        }
    }

    /// When the oldest open batch must be sent, if any is open.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_stale();
        self.deadlines.front().map(|(at, _, _)| *at)
    }

    /// The batches whose wait is over at `now`, oldest first.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<RoomBatch> {
        let mut due = Vec::new();
        while let Some(at) = self.next_deadline() {
            if at > now {
                break;
            }
            if let Some((_, _, room)) = self.deadlines.pop_front() {
                due.extend(self.open.remove(&room));
            }
        }
        due
    }

    /// Every open batch, oldest first (before a keys push or a kick, and at
    /// shutdown).
    pub(crate) fn take_all(&mut self) -> Vec<RoomBatch> {
        let mut all = Vec::with_capacity(self.open.len());
        while self.next_deadline().is_some() {
            if let Some((_, _, room)) = self.deadlines.pop_front() {
                all.extend(self.open.remove(&room));
            }
        }
        all
    }

    /// Whether no batch is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::Done;
    use std::sync::Arc;
    use tokio::sync::{mpsc, Semaphore};

    struct Fixture {
        tx: mpsc::UnboundedSender<Done>,
        _rx: mpsc::UnboundedReceiver<Done>,
        sem: Arc<Semaphore>,
        tracker: crate::tracker::Tracker,
        offset: i64,
    }

    impl Fixture {
        fn new() -> Self {
            let (tx, _rx) = mpsc::unbounded_channel();
            Self {
                tx,
                _rx,
                sem: Arc::new(Semaphore::new(1000)),
                tracker: crate::tracker::Tracker::new(),
                offset: 0,
            }
        }
        fn ticket(&mut self) -> Ticket {
            self.offset += 1;
            let epoch = self.tracker.track(0, self.offset);
            let permit = self.sem.clone().try_acquire_owned().unwrap();
            Ticket::new(0, self.offset, epoch, permit, self.tx.clone())
        }
    }

    fn msg(id: &'static str) -> Bytes {
        Bytes::from_static(id.as_bytes())
    }

    fn ids(b: &RoomBatch) -> Vec<&str> {
        b.messages
            .iter()
            .map(|m| std::str::from_utf8(m).unwrap())
            .collect()
    }

    fn finish(batches: Vec<RoomBatch>) {
        for b in batches {
            b.tickets.into_iter().for_each(Ticket::finish);
        }
    }

    #[test]
    fn a_full_batch_leaves_at_once_in_order() {
        let mut f = Fixture::new();
        let mut b = RoomBatches::new(3, usize::MAX, Duration::from_millis(5));
        let now = Instant::now();
        assert!(b.add("r".into(), msg("1"), f.ticket(), now).is_none());
        assert!(b.add("r".into(), msg("2"), f.ticket(), now).is_none());
        let full = b.add("r".into(), msg("3"), f.ticket(), now).unwrap();
        assert_eq!((full.room.as_str(), ids(&full)), ("r", vec!["1", "2", "3"]));
        assert!(b.is_empty());
        assert_eq!(b.next_deadline(), None);
        finish(vec![full]);
    }

    #[test]
    fn a_message_that_would_overflow_the_bytes_sends_the_batch_before_it() {
        let mut f = Fixture::new();
        let mut b = RoomBatches::new(100, 8, Duration::from_millis(5));
        let now = Instant::now();
        assert!(b.add("r".into(), msg("123"), f.ticket(), now).is_none());
        assert!(b.add("r".into(), msg("456"), f.ticket(), now).is_none());
        let full = b.add("r".into(), msg("789"), f.ticket(), now).unwrap();
        assert_eq!(ids(&full), vec!["123", "456"], "6 + 3 > 8");
        // The message that did not fit opened the next batch; one message
        // larger than the bound still goes, alone.
        let next = b
            .add("r".into(), msg("0123456789"), f.ticket(), now)
            .unwrap();
        assert_eq!(ids(&next), vec!["789"]);
        let all = b.take_all();
        assert_eq!(ids(&all[0]), vec!["0123456789"]);
        finish(vec![full, next]);
        finish(all);
    }

    #[test]
    fn batches_leave_when_their_first_message_waited_long_enough() {
        let mut f = Fixture::new();
        let wait = Duration::from_millis(5);
        let mut b = RoomBatches::new(10, usize::MAX, wait);
        let t0 = Instant::now();
        b.add("a".into(), msg("a1"), f.ticket(), t0);
        b.add(
            "b".into(),
            msg("b1"),
            f.ticket(),
            t0 + Duration::from_millis(2),
        );
        b.add(
            "a".into(),
            msg("a2"),
            f.ticket(),
            t0 + Duration::from_millis(4),
        );
        assert_eq!(b.next_deadline(), Some(t0 + wait));

        assert!(b.take_due(t0 + Duration::from_millis(4)).is_empty());
        let due = b.take_due(t0 + wait);
        assert_eq!(due.len(), 1);
        assert_eq!(ids(&due[0]), vec!["a1", "a2"]);
        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_millis(7)));
        finish(due);

        let due = b.take_due(t0 + Duration::from_millis(7));
        assert_eq!(ids(&due[0]), vec!["b1"]);
        assert!(b.is_empty());
        finish(due);
    }

    #[test]
    fn take_all_returns_oldest_first_and_skips_batches_sent_early() {
        let mut f = Fixture::new();
        let mut b = RoomBatches::new(2, usize::MAX, Duration::from_millis(5));
        let t0 = Instant::now();
        b.add("a".into(), msg("a1"), f.ticket(), t0);
        b.add("b".into(), msg("b1"), f.ticket(), t0);
        let full = b.add("a".into(), msg("a2"), f.ticket(), t0).unwrap();
        b.add("a".into(), msg("a3"), f.ticket(), t0);
        let all = b.take_all();
        let rooms: Vec<_> = all.iter().map(|b| b.room.as_str()).collect();
        assert_eq!(rooms, vec!["b", "a"]);
        assert_eq!(ids(&all[1]), vec!["a3"]);
        assert!(b.is_empty());
        finish(vec![full]);
        finish(all);
    }
}
