//! Stored messages: each user's inbox and each room's history.
//!
//! A stream (one user's inbox, or one room's history) numbers its messages
//! 1, 2, 3... without gaps within an *epoch*. Logic appends a message before
//! it publishes it, so "202 Accepted" means stored; a client that missed
//! messages (offline, a dropped connection, a comet that was skipped) reads
//! them back after the last seq it showed, and pages back through older
//! ones. The store keeps the encoded message bytes logic wrote once, and
//! stamps each with its seq and epoch as it is read
//! ([`courier_proto::with_position`]).
//!
//! A stream keeps its messages for [`InboxOptions::retention`] (0: forever);
//! reading from before what is held says so (`gap`). An epoch is a random
//! number the store picks when it creates a stream, and it changes only if
//! the store proves it lost writes: a device of the user resuming its own
//! inbox from a position ahead of it in the same epoch (the store was
//! restored from an old backup, [`Start::Resume`]) moves the stream to a
//! new epoch, so every device is told (`reset`) instead of being handed
//! other messages under seqs it already showed. Anyone else claiming a
//! position past the end (a room member, a backend) just reads nothing
//! new: no reader can make every member of a room start over. A reader
//! told `reset` gets the newest page, not the whole retained history.
//!
//! Appends may carry a deduplication key (a sender's `client_msg_id`, an
//! HTTP `Idempotency-Key`): a repeat within the window returns the original
//! seq and stores nothing. Users also record how far they have read (`ack`),
//! so a device with no position of its own starts there.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_proto::client::StreamHead;
use courier_proto::Position;

use crate::Result;

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream<'a> {
    /// A user's inbox.
    User(&'a str),
    /// A room's history.
    Room(&'a str),
}

impl Stream<'_> {
    /// The stream's key in a store: `u:<uid>` or `r:<room>`. Names cannot
    /// hold the separator's ambiguity: the prefix alone tells the kind.
    pub fn key(&self) -> String {
        match self {
            Stream::User(uid) => format!("u:{uid}"),
            Stream::Room(room) => format!("r:{room}"),
        }
    }
}

/// A message to store.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    /// The encoded `Message`, seq and epoch unset.
    pub message: &'a Bytes,
    /// With a key, a repeat of it within the window stores nothing and
    /// returns the first append's seq.
    pub dedup: Option<&'a str>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The message's place (the original's, for a repeat).
    pub at: Position,
    /// The dedup key was seen: nothing was stored, `at` is the original's.
    pub repeat: bool,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest messages after this position. Epoch 0 means no epoch is
    /// known: the seq is taken in whatever epoch is current. A position past
    /// the end reads nothing.
    After(Position),
    /// As `After`, from a device of the stream's own user resuming from a
    /// position it showed: one past the end of the same epoch proves the
    /// store lost writes, and moves the stream to a new epoch.
    Resume(Position),
    /// The newest messages below this position's seq (paging back); seq 0
    /// reads back from the newest. Epoch 0 as for `After`.
    Before(Position),
    /// After the user's acknowledged position (from the oldest message held
    /// if there is none in the current epoch). Users only.
    Acked,
}

/// A page of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The stream now. `first_seq` is the oldest message held.
    pub head: StreamHead,
    /// Encoded messages, seq and epoch stamped, in seq order.
    pub messages: Vec<Bytes>,
    /// Messages the reader asked for are gone (older than the retention)
    /// next to these: after the asked position and before the first
    /// returned (reading forwards), or before the first returned (reading
    /// back to the start of what is held).
    pub gap: bool,
    /// The asked epoch is not the stream's (or the store moved the stream
    /// to a new one): the page is the newest messages of the current epoch.
    pub reset: bool,
}

/// How long messages and dedup keys are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxOptions {
    /// Messages older than this are dropped; zero keeps them forever.
    pub retention: Duration,
    /// How long a dedup key is remembered.
    pub dedup_window: Duration,
}

impl Default for InboxOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(90 * 24 * 3600),
            dedup_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// The message store. See the module docs.
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// Appends `message` to `stream` with the next seq.
    async fn append(&self, stream: Stream<'_>, message: NewMessage<'_>) -> Result<Appended>;
    /// Up to `limit` messages from `start`, at most `max_bytes` of them (but
    /// at least one if any), and the head. `limit` 0 reads only the head.
    async fn read(
        &self,
        stream: Stream<'_>,
        start: Start,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page>;
    /// Records that user `uid` has read its inbox up to `at`. An ack of
    /// another epoch, or below the recorded one, changes nothing.
    async fn ack(&self, uid: &str, at: Position) -> Result<()>;
    /// The heads of several streams, in the order asked (a stream that does
    /// not exist has an empty head).
    async fn heads(&self, streams: &[Stream<'_>]) -> Result<Vec<StreamHead>>;
}

/// The page of a stream that does not exist: empty, and a reader that
/// named an epoch is told it is gone (`reset`).
pub(crate) fn missing_stream(start: Start) -> Page {
    let reset = match start {
        Start::After(p) | Start::Resume(p) | Start::Before(p) => p.epoch != 0,
        Start::Acked => false,
    };
    Page {
        reset,
        ..Page::default()
    }
}

/// A fresh epoch: random, never 0, and exact in a JSON number and a
/// PostgreSQL `bigint`.
pub(crate) fn new_epoch() -> u64 {
    u64::from(rand::random::<u32>() | 1)
}

/// Where a forward read of a stream whose head is `head` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forward {
    /// The oldest messages after this seq.
    After(u64),
    /// The reader's epoch is not the stream's: the newest page, `reset`.
    Reset,
    /// The reader proved the store lost writes: a new epoch, then `Reset`.
    NewEpoch,
}

/// Where a forward read from `start` goes (`Start::Before` is not one).
pub(crate) fn forward_from(start: Start, head: &StreamHead, acked: Position) -> Forward {
    let (p, proves) = match start {
        Start::Acked if acked.epoch == head.epoch => return Forward::After(acked.seq),
        Start::Acked | Start::Before(_) => return Forward::After(0),
        Start::After(p) => (p, false),
        Start::Resume(p) => (p, true),
    };
    if p.epoch != 0 && p.epoch != head.epoch {
        return Forward::Reset;
    }
    if p.seq > head.last_seq {
        return if proves && p.epoch != 0 {
            Forward::NewEpoch
        } else {
            Forward::After(head.last_seq)
        };
    }
    Forward::After(p.seq)
}

/// Where a backward read starts (the seq the page ends below) and whether
/// the reader's epoch was not the stream's.
pub(crate) fn backward_from(before: Position, head: &StreamHead) -> (u64, bool) {
    let end = head.last_seq.saturating_add(1);
    if before.epoch != 0 && before.epoch != head.epoch {
        return (end, true);
    }
    match before.seq {
        0 => (end, false),
        seq => (seq.min(end), false),
    }
}

/// Whether a forward page after `after` misses messages that are gone:
/// the oldest held is past the next one wanted.
pub(crate) fn forward_gap(after: u64, head: &StreamHead) -> bool {
    after.saturating_add(1) < first_held(head)
}

/// The oldest seq a stream holds, or the one after its last if it holds
/// none.
pub(crate) fn first_held(head: &StreamHead) -> u64 {
    if head.first_seq == 0 {
        head.last_seq.saturating_add(1)
    } else {
        head.first_seq
    }
}

/// Whether a backward page whose oldest message is `oldest` (none: the page
/// is empty and ends below `end`) reached the start of what is held while
/// older messages are gone.
pub(crate) fn backward_gap(oldest: Option<u64>, end: u64, head: &StreamHead) -> bool {
    let first_held = first_held(head);
    oldest.unwrap_or(end) <= first_held && first_held > 1
}

/// Takes messages in order while they fit `limit` and `max_bytes` (always
/// at least one).
pub(crate) fn within_budget<T>(
    items: impl IntoIterator<Item = T>,
    size: impl Fn(&T) -> usize,
    limit: usize,
    max_bytes: usize,
) -> Vec<T> {
    let mut taken = Vec::new();
    let mut used = 0usize;
    for item in items {
        let len = size(&item);
        if taken.len() >= limit || (!taken.is_empty() && used + len > max_bytes) {
            break;
        }
        used += len;
        taken.push(item);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(epoch: u64, first: u64, last: u64) -> StreamHead {
        StreamHead {
            epoch,
            last_seq: last,
            first_seq: first,
        }
    }

    #[test]
    fn a_forward_read_starts_after_the_position_or_says_why_not() {
        let h = head(5, 1, 10);
        let none = Position::NONE;
        let after = |e, s| Start::After(Position::new(e, s));
        assert_eq!(forward_from(after(5, 3), &h, none), Forward::After(3));
        assert_eq!(forward_from(after(0, 3), &h, none), Forward::After(3));
        assert_eq!(forward_from(after(9, 3), &h, none), Forward::Reset);
        // Past the end: only the user's own resuming device proves a loss.
        assert_eq!(forward_from(after(5, 11), &h, none), Forward::After(10));
        let resume = Start::Resume(Position::new(5, 11));
        assert_eq!(forward_from(resume, &h, none), Forward::NewEpoch);
        let unknown = Start::Resume(Position::new(0, 11));
        assert_eq!(forward_from(unknown, &h, none), Forward::After(10));
        let acked = Position::new(5, 4);
        assert_eq!(forward_from(Start::Acked, &h, acked), Forward::After(4));
        let stale = Position::new(6, 4);
        assert_eq!(forward_from(Start::Acked, &h, stale), Forward::After(0));
    }

    #[test]
    fn a_backward_read_ends_below_the_position_or_the_end() {
        let h = head(5, 1, 10);
        assert_eq!(backward_from(Position::new(5, 4), &h), (4, false));
        assert_eq!(backward_from(Position::new(5, 0), &h), (11, false));
        assert_eq!(backward_from(Position::new(5, 99), &h), (11, false));
        assert_eq!(backward_from(Position::new(6, 4), &h), (11, true));
    }

    #[test]
    fn a_gap_is_a_missing_next_message() {
        assert!(!forward_gap(0, &head(5, 1, 3)));
        assert!(forward_gap(0, &head(5, 2, 3)));
        assert!(!forward_gap(1, &head(5, 2, 3)));
        assert!(
            !forward_gap(3, &head(5, 0, 3)),
            "nothing held, nothing missed"
        );
        assert!(forward_gap(1, &head(5, 0, 3)), "2 and 3 are gone");
    }

    #[test]
    fn a_backward_gap_is_reaching_the_start_of_what_is_held() {
        assert!(!backward_gap(Some(1), 11, &head(5, 1, 10)));
        assert!(backward_gap(Some(3), 11, &head(5, 3, 10)));
        assert!(!backward_gap(Some(5), 11, &head(5, 3, 10)), "more to page");
        assert!(backward_gap(None, 6, &head(5, 0, 5)), "everything is gone");
        assert!(
            !backward_gap(None, 1, &head(0, 0, 0)),
            "nothing was ever stored"
        );
        assert!(backward_gap(None, 2, &head(5, 3, 10)), "seq 1 is gone");
    }

    #[test]
    fn the_budget_takes_at_least_one() {
        let sizes = [100usize, 100, 100];
        assert_eq!(within_budget(sizes, |s| *s, 10, 150).len(), 1);
        assert_eq!(within_budget(sizes, |s| *s, 10, 250).len(), 2);
        assert_eq!(within_budget(sizes, |s| *s, 10, 1).len(), 1);
        assert_eq!(within_budget(sizes, |s| *s, 2, 1000).len(), 2);
    }
}
