//! Recipient resolution and publishing: the one path every message takes,
//! whether it comes from a backend's HTTP push or a client's upstream `Send`.
//!
//! The message is encoded once, here. A message to users is then stored in
//! each user's inbox, which gives it that user's next seq, **before** it is
//! published: a 202 means stored and queued, and a user who misses the live
//! copy reads it from the inbox. Who to publish to is looked up only once
//! the message is stored: a connection that opens before the lookup gets
//! the live copy, and one that opens after it reads the message in its
//! resume page (which is read after its session exists), so none falls in
//! between. Each user's copy is the same bytes with its
//! seq and epoch appended ([`courier_proto::with_position`]), published as
//! one [`KeysPush`] per comet holding the user's connections, under the uid
//! as queue key, so one user's messages stay in one partition in order. A
//! room message is stored in the room's history the same way and published
//! once, naming the comets that hold members. Pushes to connection keys and
//! broadcasts are not stored (a key names one live connection; broadcast is
//! best effort): they carry seq 0.
//!
//! A repeat of a dedup key (a sender's `client_msg_id`, an HTTP
//! `Idempotency-Key` of the same API key) is found by the store, per
//! recipient: nothing is stored again and the original seq is returned.
//! The original, read back, is published again: a retry after a 503 (the
//! message was stored, its publish failed) is delivered live, and a client
//! that had it already drops the copy by its seq and `msg_id`. A key reused
//! for a different message (another sender, target, op or data) is refused
//! ([`PublishError::Reused`]): the first message stays, and the second is
//! not silently taken for it. So a push to many users that failed half-way
//! can be retried with the same key, and none is stored twice.
//!
//! While the queue's brokers do not answer, a push is refused (503) before
//! anything is stored. A message stored whose publish then failed (the
//! broker died in between) is *stranded*: stored, yet no connected device
//! was told. The publisher counts those ([`Publisher::stranded`]), and
//! `queue_watch` has every client told where its streams stand once the
//! queue answers again, so they sync it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use courier_cluster::inbox::{Appended, Inbox, NewMessage, Start, Stream};
use courier_cluster::queue::QueueHealth;
use courier_cluster::{Queue, Session, Sessions};
use courier_proto::client::{Message, Target};
use courier_proto::queue::{envelope, BroadcastPush, Envelope, KeysPush, KickKeys, RoomPush};
use courier_proto::{encode_message, with_position, Position};
use futures::{StreamExt, TryStreamExt};
use prost::Message as _;
use tokio::sync::watch;

use crate::hooks::Hooks;

/// How many recipients one push handles at once.
const CONCURRENCY: usize = 32;

/// Who a message is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Recipients<'a> {
    /// Every connection of each user; stored in each inbox.
    Users(&'a [String]),
    /// These connections (not stored).
    Keys(&'a [String]),
    /// Every member of a room; stored in the room's history.
    Room(&'a str),
    /// Everyone, at most `rate` connections per second per comet (0 = no
    /// limit); not stored.
    All { rate: u32 },
}

/// Where a repeat of the same message is recognised.
#[derive(Debug, Clone)]
pub(crate) enum Dedup {
    /// A client's `Send` with its `client_msg_id`.
    Send { client_msg_id: String },
    /// An HTTP push with an `Idempotency-Key`, scoped to the API key that
    /// sent it: two backends using the same key do not collide.
    Http { api_key: String, key: String },
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    /// The dedup key was used for another message within the window.
    #[error("this idempotency key was used for a different message")]
    Reused,
    #[error(transparent)]
    Cluster(#[from] courier_cluster::Error),
}

/// What a message says, before logic stamps it.
#[derive(Debug, Clone)]
pub(crate) struct Content {
    /// Sender uid, "" for a backend push.
    pub(crate) from: String,
    /// Application-defined operation code.
    pub(crate) op: u32,
    /// Opaque payload.
    pub(crate) data: Bytes,
    /// Makes a retry of the same message the same message.
    pub(crate) dedup: Option<Dedup>,
}

/// Namespace of the `msg_id`s derived from a dedup key.
const DEDUP_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6a1c_4f4e_9a7e_4c39_b1d2_61f0_c0de_7e11);

impl Content {
    /// The store's dedup key: the same for every retry of this message.
    fn dedup_key(&self) -> Option<String> {
        match &self.dedup {
            Some(Dedup::Send { client_msg_id }) if !client_msg_id.is_empty() => {
                Some(format!("s:{}:{client_msg_id}", self.from))
            }
            Some(Dedup::Http { api_key, key }) => Some(format!("k:{api_key}:{key}")),
            _ => None,
        }
    }

    /// A new message id: derived from the dedup key when there is one (the
    /// same retry, the same id), else a fresh time-ordered one.
    fn message_id(&self) -> String {
        match self.dedup_key() {
            Some(key) => uuid::Uuid::new_v5(&DEDUP_NAMESPACE, key.as_bytes()).to_string(),
            None => uuid::Uuid::now_v7().to_string(),
        }
    }
}

/// A message logic accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) msg_id: String,
    /// Its place in the one stream it went to (a single user, a room);
    /// `None` for several users, keys and broadcasts.
    pub(crate) position: Option<Position>,
    /// Recipients that had it already (a repeat of the dedup key).
    pub(crate) repeats: usize,
    /// Envelopes published for it.
    pub(crate) envelopes: usize,
}

/// Resolves recipients, stores, and publishes envelopes.
#[derive(Clone)]
pub(crate) struct Publisher {
    sessions: Arc<dyn Sessions>,
    inbox: Arc<dyn Inbox>,
    queue: Arc<dyn Queue>,
    health: watch::Receiver<QueueHealth>,
    /// Stored messages whose publish failed, counted up.
    stranded: watch::Sender<u64>,
    /// Where messages for users with no connection go (the offline hook).
    hooks: Arc<Hooks>,
}

/// What delivering to one stored stream did.
struct Delivered {
    appended: Appended,
    envelopes: usize,
}

impl Publisher {
    /// A publisher over these backends.
    pub(crate) fn new(
        sessions: Arc<dyn Sessions>,
        inbox: Arc<dyn Inbox>,
        queue: Arc<dyn Queue>,
        hooks: Arc<Hooks>,
    ) -> Self {
        Self {
            sessions,
            inbox,
            health: queue.health(),
            queue,
            stranded: {
                // Shown at 0 from the start, so an alert on its increase
                // has a series.
                metrics::counter!("courier_logic_stranded_total").increment(0);
                watch::Sender::new(0)
            },
            hooks,
        }
    }

    /// The queue's health, as the queue's own probe sees it.
    pub(crate) fn queue_health(&self) -> watch::Receiver<QueueHealth> {
        self.health.clone()
    }

    /// How many stored messages failed to be published: changes whenever
    /// one does.
    pub(crate) fn stranded(&self) -> watch::Receiver<u64> {
        self.stranded.subscribe()
    }

    /// Stamps `content` as a new message for `to`, stores it where it is
    /// stored, and publishes it.
    pub(crate) async fn publish(
        &self,
        to: Recipients<'_>,
        content: Content,
    ) -> Result<Accepted, PublishError> {
        // Refused before anything is stored: a message stored now could
        // not be published, and its sender is told to retry anyway.
        if !self.health.borrow().reachable {
            return Err(courier_cluster::Error::Unavailable {
                backend: "queue",
                message: "no broker answers".to_owned(),
            }
            .into());
        }
        let msg_id = content.message_id();
        let dedup = content.dedup_key();
        let message = encode_message(&Message {
            msg_id: msg_id.clone(),
            from: content.from,
            to: target_of(to),
            op: content.op,
            data: content.data,
            sent_at_ms: courier_cluster::now_ms(),
            ..Message::default()
        });
        let mut accepted = Accepted {
            msg_id,
            position: None,
            repeats: 0,
            envelopes: 0,
        };
        let dedup = dedup.as_deref();
        match to {
            Recipients::Users(uids) => {
                let uids: BTreeSet<&str> = uids.iter().map(String::as_str).collect();
                // Owned ids: a stream borrowing them is not `Send` across awaits.
                let owned: Vec<String> = uids.iter().map(|u| (*u).to_owned()).collect();
                let delivered: Vec<Delivered> = futures::stream::iter(owned)
                    .map(|uid| {
                        let message = &message;
                        async move { self.to_user(&uid, message, dedup).await }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .try_collect()
                    .await?;
                for d in &delivered {
                    accepted.envelopes += d.envelopes;
                    accepted.repeats += usize::from(d.appended.repeat);
                }
                if let [only] = delivered.as_slice() {
                    accepted.position = Some(only.appended.at);
                }
            }
            Recipients::Keys(keys) => {
                let found: Vec<Option<Session>> = futures::stream::iter(unique(keys))
                    .map(|key| async move { self.sessions.key_session(&key).await })
                    .buffer_unordered(CONCURRENCY)
                    .try_collect()
                    .await
                    .map_err(PublishError::Cluster)?;
                let single = match keys {
                    [key] => Some(key.as_str()),
                    _ => None,
                };
                accepted.envelopes = self
                    .publish_keys(single, found.into_iter().flatten(), &message)
                    .await?;
            }
            Recipients::Room(room) => {
                let d = self.to_room(room, &message, dedup).await?;
                accepted.position = Some(d.appended.at);
                accepted.repeats = usize::from(d.appended.repeat);
                accepted.envelopes = d.envelopes;
            }
            Recipients::All { rate } => {
                let envelope = envelope::Kind::Broadcast(BroadcastPush { message, rate });
                self.send("all", envelope).await?;
                accepted.envelopes = 1;
            }
        }
        metrics::counter!("courier_logic_messages_total", "target" => kind_of(to)).increment(1);
        Ok(accepted)
    }

    /// Stores `message` in `stream` and returns what to publish: the
    /// stored copy, stamped with its place, or for a repeat the original
    /// as stored (`None` if it can no longer be read back).
    async fn store(
        &self,
        stream: Stream<'_>,
        message: &Bytes,
        dedup: Option<&str>,
    ) -> Result<(Appended, Option<Bytes>), PublishError> {
        let appended = self
            .inbox
            .append(stream, NewMessage { message, dedup })
            .await?;
        if !appended.repeat {
            let copy = with_position(message, appended.at.seq, appended.at.epoch);
            return Ok((appended, Some(copy)));
        }
        let original = self.original(stream, appended.at).await?;
        match original {
            Some(stored) if !same_message(&stored, message) => Err(PublishError::Reused),
            original => Ok((appended, original)),
        }
    }

    /// The message stored at `at` in `stream`, if it is still held (and,
    /// read from a standby, already there).
    async fn original(
        &self,
        stream: Stream<'_>,
        at: Position,
    ) -> courier_cluster::Result<Option<Bytes>> {
        let before = Position::new(at.epoch, at.seq.saturating_sub(1));
        let page = self
            .inbox
            .read(stream, Start::After(before), 1, usize::MAX)
            .await?;
        Ok(page.messages.into_iter().next().filter(|m| {
            Message::decode(m.as_ref()).is_ok_and(|m| m.seq == at.seq && m.epoch == at.epoch)
        }))
    }

    /// Stores `message` in `uid`'s inbox, then publishes the user's copy to
    /// each comet holding its connections (a repeat's original again).
    async fn to_user(
        &self,
        uid: &str,
        message: &Bytes,
        dedup: Option<&str>,
    ) -> Result<Delivered, PublishError> {
        let (appended, copy) = self.store(Stream::User(uid), message, dedup).await?;
        let Some(copy) = copy else {
            return Ok(Delivered {
                appended,
                envelopes: 0,
            });
        };
        let sessions = self
            .sessions
            .user_sessions(uid)
            .await
            .inspect_err(|_| self.strand())?;
        if sessions.is_empty() && !appended.repeat {
            self.hooks.offline(uid, &copy);
        }
        let envelopes = self
            .publish_keys(Some(uid), sessions.into_iter(), &copy)
            .await
            .inspect_err(|_| self.strand())?;
        Ok(Delivered {
            appended,
            envelopes,
        })
    }

    /// Stores `message` in `room`'s history, then publishes it to the comets
    /// holding members (a repeat's original again).
    async fn to_room(
        &self,
        room: &str,
        message: &Bytes,
        dedup: Option<&str>,
    ) -> Result<Delivered, PublishError> {
        let (appended, copy) = self.store(Stream::Room(room), message, dedup).await?;
        let Some(copy) = copy else {
            return Ok(Delivered {
                appended,
                envelopes: 0,
            });
        };
        let comet_ids = self
            .sessions
            .room_comets(room)
            .await
            .inspect_err(|_| self.strand())?;
        if comet_ids.is_empty() {
            return Ok(Delivered {
                appended,
                envelopes: 0,
            });
        }
        let envelope = envelope::Kind::Room(RoomPush {
            room: room.to_owned(),
            comet_ids,
            message: copy,
        });
        self.send(room, envelope)
            .await
            .inspect_err(|_| self.strand())?;
        Ok(Delivered {
            appended,
            envelopes: 1,
        })
    }

    /// Tells the comets holding `sessions` to close them, keyed by `uid` so
    /// the kick stays ordered with the user's messages.
    pub(crate) async fn kick(
        &self,
        uid: &str,
        sessions: &[Session],
        reason: &str,
    ) -> courier_cluster::Result<()> {
        for (comet_id, keys) in by_comet(sessions.iter().cloned()) {
            let envelope = envelope::Kind::Kick(KickKeys {
                comet_id,
                keys,
                reason: reason.to_owned(),
            });
            self.send(uid, envelope).await?;
        }
        Ok(())
    }

    /// One `KeysPush` per comet holding any of `sessions`; returns how many.
    /// The queue key is `single_target` when the push names one target,
    /// else the comet id.
    async fn publish_keys(
        &self,
        single_target: Option<&str>,
        sessions: impl Iterator<Item = Session>,
        message: &Bytes,
    ) -> courier_cluster::Result<usize> {
        let grouped = by_comet(sessions);
        let count = grouped.len();
        futures::stream::iter(grouped)
            .map(|(comet_id, keys)| {
                let queue_key = single_target.map_or_else(|| comet_id.clone(), str::to_owned);
                let envelope = envelope::Kind::Keys(KeysPush {
                    comet_id,
                    keys,
                    message: message.clone(),
                });
                async move { self.send(&queue_key, envelope).await }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await?;
        Ok(count)
    }

    /// Counts a stored message that was not published (the lookup of where
    /// its recipients are, or the publish itself, failed).
    fn strand(&self) {
        metrics::counter!("courier_logic_stranded_total").increment(1);
        self.stranded.send_modify(|n| *n += 1);
    }

    async fn send(&self, key: &str, kind: envelope::Kind) -> courier_cluster::Result<()> {
        let bytes = Envelope { kind: Some(kind) }.encode_to_vec();
        self.queue.publish(key, Bytes::from(bytes)).await
    }
}

/// Whether `stored` (as read back) says what `fresh` (just encoded) says:
/// the same sender, target, op and data. The id is the same by
/// construction, the send time is not.
fn same_message(stored: &[u8], fresh: &[u8]) -> bool {
    match (Message::decode(stored), Message::decode(fresh)) {
        (Ok(a), Ok(b)) => a.from == b.from && a.to == b.to && a.op == b.op && a.data == b.data,
        _ => false,
    }
}

/// The distinct ids of `ids`, owned.
fn unique(ids: &[String]) -> Vec<String> {
    let set: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Keys grouped by comet, each list sorted and without duplicates.
fn by_comet(sessions: impl Iterator<Item = Session>) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sessions {
        grouped.entry(s.comet_id).or_default().insert(s.key);
    }
    grouped
        .into_iter()
        .map(|(comet, keys)| (comet, keys.into_iter().collect()))
        .collect()
}

/// The message's `to`: the target when there is exactly one, else none (a
/// push to several users or keys has no single addressee).
fn target_of(to: Recipients<'_>) -> Option<Target> {
    match to {
        Recipients::Users([uid]) => Some(Target::user(uid.clone())),
        Recipients::Keys([key]) => Some(Target::key(key.clone())),
        Recipients::Users(_) | Recipients::Keys(_) => None,
        Recipients::Room(room) => Some(Target::room(room)),
        Recipients::All { .. } => Some(Target::all()),
    }
}

fn kind_of(to: Recipients<'_>) -> &'static str {
    match to {
        Recipients::Users(_) => "users",
        Recipients::Keys(_) => "keys",
        Recipients::Room(_) => "room",
        Recipients::All { .. } => "all",
    }
}
