//! Stored messages: each user's inbox and each room's history.
//!
//! A stream (one user's inbox, or one room's history) numbers its messages
//! 1, 2, 3... without gaps within an *epoch*. Logic appends a message before
//! it publishes it, so "202 Accepted" means stored; a client that missed
//! messages (offline, a dropped connection, a comet that was skipped) reads
//! them back after the last seq it showed. The store keeps the encoded
//! message bytes logic wrote once, and stamps each with its seq and epoch
//! as it is read ([`courier_proto::with_position`]).
//!
//! A stream is bounded by count and age ([`StreamLimits`]); reading from
//! before the window says so (`gap`). An epoch is a random number the store
//! picks when it creates a stream: if the store loses a stream (a restart
//! without persistence, a flush), the next append starts a new epoch, and a
//! reader asking about the old one is told (`reset`) instead of being handed
//! other messages under seqs it already showed. A reader whose position is
//! ahead of the stream in the same epoch proves the store lost writes (a
//! failover): the read moves the stream to a new epoch, so every device is
//! told too.
//!
//! Appends may carry a deduplication key (a sender's `client_msg_id`, an
//! HTTP `Idempotency-Key`): a repeat within the window returns the original
//! seq and stores nothing. Users also record how far they have read (`ack`),
//! so a device with no position of its own starts there.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream<'a> {
    /// A user's inbox.
    User(&'a str),
    /// A room's history.
    Room(&'a str),
}

/// Where a stream stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    /// The current epoch; 0 while the stream does not exist.
    pub epoch: u64,
    /// The newest seq; 0 if none was ever assigned in this epoch.
    pub last_seq: u64,
    /// The oldest seq still held; 0 if none is held.
    pub first_seq: u64,
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
    pub seq: u64,
    pub epoch: u64,
    /// The dedup key was seen: nothing was stored, `seq` is the original's.
    pub repeat: bool,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After `after_seq` of `epoch`. Epoch 0 means no epoch is known:
    /// `after_seq` is taken in whatever epoch is current.
    Position { epoch: u64, after_seq: u64 },
    /// After the user's acknowledged position (from the start of the window
    /// if there is none in the current epoch). Users only.
    Acked,
}

/// A page of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub head: Head,
    /// Encoded messages, seq and epoch stamped, in seq order.
    pub messages: Vec<Bytes>,
    /// Messages after the asked position left the window before these.
    pub gap: bool,
    /// The asked epoch is not the stream's: read from the start of what is
    /// held in the current one.
    pub reset: bool,
}

/// How much one stream keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Most messages held.
    pub max_messages: usize,
    /// Messages older than this are dropped; a stream with no append for
    /// this long is forgotten entirely (it restarts with a new epoch).
    pub max_age: Duration,
}

/// Bounds of the streams and of deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxOptions {
    pub inbox: StreamLimits,
    pub room: StreamLimits,
    /// How long a dedup key is remembered.
    pub dedup_window: Duration,
}

impl Default for InboxOptions {
    fn default() -> Self {
        Self {
            inbox: StreamLimits {
                max_messages: 1000,
                max_age: Duration::from_secs(7 * 24 * 3600),
            },
            room: StreamLimits {
                max_messages: 200,
                max_age: Duration::from_secs(24 * 3600),
            },
            dedup_window: Duration::from_secs(24 * 3600),
        }
    }
}

impl InboxOptions {
    /// The limits of `stream`'s kind.
    pub fn limits(&self, stream: Stream<'_>) -> StreamLimits {
        match stream {
            Stream::User(_) => self.inbox,
            Stream::Room(_) => self.room,
        }
    }
}

/// The message store. See the module docs.
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// Appends `message` to `stream` with the next seq.
    async fn append(&self, stream: Stream<'_>, message: NewMessage<'_>) -> Result<Appended>;
    /// Up to `limit` messages after `start`, at most `max_bytes` of them
    /// (but at least one if any), and the head. `limit` 0 reads only the head.
    async fn read(
        &self,
        stream: Stream<'_>,
        start: Start,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page>;
    /// Records that user `uid` has read its inbox up to `seq` of `epoch`. An
    /// ack of another epoch, or below the recorded one, changes nothing.
    async fn ack(&self, uid: &str, epoch: u64, seq: u64) -> Result<()>;
}

/// A fresh epoch: random, never 0.
pub(crate) fn new_epoch() -> u64 {
    u64::from(rand::random::<u32>() | 1)
}
