//! Recipient resolution and publishing: the one path every message takes,
//! whether it comes from a backend's HTTP push or a client's upstream `Send`.
//!
//! Logic decides who a message is for; job only delivers. So a user or key
//! push is resolved here to `(comet, keys)` and published as one
//! [`KeysPush`] per comet, a room push names the comets holding members, and
//! a broadcast names nobody. The queue key keeps one target's messages in
//! order: the uid or key for a single-target push, the room for a room push,
//! `"all"` for a broadcast, and the comet id when one push names several
//! targets (their order relative to each other is not promised anyway).
//!
//! The message is encoded once, here; every envelope carries those bytes,
//! and job and the comets pass them on without decoding them.
//!
//! A push is acknowledged only after every envelope it produced was accepted
//! by the queue. Recipients that are offline produce no envelope, and there
//! is no inbox yet, so they do not get the message later.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use courier_cluster::{Queue, Session, Sessions};
use courier_proto::client::{Message, Target};
use courier_proto::encode_message;
use courier_proto::queue::{envelope, BroadcastPush, Envelope, KeysPush, KickKeys, RoomPush};
use futures::{StreamExt, TryStreamExt};
use prost::Message as _;

/// How many session lookups or queue publishes one push runs at once.
const CONCURRENCY: usize = 32;

/// Who a message is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Recipients<'a> {
    /// Every connection of each user.
    Users(&'a [String]),
    /// These connections.
    Keys(&'a [String]),
    /// Every member of a room.
    Room(&'a str),
    /// Everyone, at most `rate` connections per second per comet (0 = no limit).
    All { rate: u32 },
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
    /// The sender's own id for this message (upstream `Send`), so a retried
    /// send gets the same `msg_id` and receivers drop the duplicate.
    pub(crate) client_msg_id: Option<String>,
}

/// Namespace of the `msg_id`s derived from a sender's `client_msg_id`.
const CLIENT_MSG_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6a1c_4f4e_9a7e_4c39_b1d2_61f0_c0de_7e11);

/// A new message id: derived from `(from, client_msg_id)` when the sender
/// gave one (the same retry, the same id), else a fresh time-ordered one.
fn message_id(from: &str, client_msg_id: Option<&str>) -> String {
    match client_msg_id {
        Some(id) if !id.is_empty() => {
            let name = format!("{from}\u{0}{id}");
            uuid::Uuid::new_v5(&CLIENT_MSG_NAMESPACE, name.as_bytes()).to_string()
        }
        _ => uuid::Uuid::now_v7().to_string(),
    }
}

/// A message logic accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) msg_id: String,
    pub(crate) seq: u64,
    /// Envelopes published for it.
    pub(crate) envelopes: usize,
}

/// Resolves recipients against the session store and publishes envelopes.
#[derive(Clone)]
pub(crate) struct Publisher {
    sessions: Arc<dyn Sessions>,
    queue: Arc<dyn Queue>,
}

impl Publisher {
    /// A publisher over these backends.
    pub(crate) fn new(sessions: Arc<dyn Sessions>, queue: Arc<dyn Queue>) -> Self {
        Self { sessions, queue }
    }

    /// Stamps `content` as a new message for `to` and publishes it.
    pub(crate) async fn publish(
        &self,
        to: Recipients<'_>,
        content: Content,
    ) -> courier_cluster::Result<Accepted> {
        let message = Message {
            msg_id: message_id(&content.from, content.client_msg_id.as_deref()),
            seq: 0,
            from: content.from,
            to: target_of(to),
            op: content.op,
            data: content.data,
            sent_at_ms: courier_cluster::now_ms(),
        };
        let msg_id = message.msg_id.clone();
        let message = encode_message(&message);
        let envelopes = match to {
            Recipients::Users(uids) => {
                let lookup = |store: Arc<dyn Sessions>, uid: String| async move {
                    store.user_sessions(&uid).await
                };
                self.publish_resolved(uids, lookup, &message).await?
            }
            Recipients::Keys(keys) => {
                let lookup = |store: Arc<dyn Sessions>, key: String| async move {
                    store.key_session(&key).await
                };
                self.publish_resolved(keys, lookup, &message).await?
            }
            Recipients::Room(room) => {
                let comet_ids = self.sessions.room_comets(room).await?;
                if comet_ids.is_empty() {
                    0
                } else {
                    let envelope = envelope::Kind::Room(RoomPush {
                        room: room.to_owned(),
                        comet_ids,
                        message,
                    });
                    self.send(room, envelope).await?;
                    1
                }
            }
            Recipients::All { rate } => {
                let envelope = envelope::Kind::Broadcast(BroadcastPush { message, rate });
                self.send("all", envelope).await?;
                1
            }
        };
        metrics::counter!("courier_logic_messages_total", "target" => kind_of(to)).increment(1);
        Ok(Accepted {
            msg_id,
            seq: 0,
            envelopes,
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

    /// Looks up the sessions of each distinct id in `ids` with `lookup` (a
    /// bounded number at once), then publishes them as [`publish_keys`]
    /// does; the queue key is the id itself when there is only one.
    ///
    /// [`publish_keys`]: Self::publish_keys
    async fn publish_resolved<S, Fut>(
        &self,
        ids: &[String],
        lookup: impl Fn(Arc<dyn Sessions>, String) -> Fut,
        message: &Bytes,
    ) -> courier_cluster::Result<usize>
    where
        Fut: Future<Output = courier_cluster::Result<S>>,
        S: IntoIterator<Item = Session>,
    {
        let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        // Owned ids: a stream borrowing them is not `Send` across awaits.
        let owned: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        let found: Vec<S> = futures::stream::iter(owned)
            .map(|id: String| lookup(self.sessions.clone(), id))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        self.publish_keys(single(&ids), found.into_iter().flatten(), message)
            .await
    }

    /// One `KeysPush` per comet holding any of `sessions`; returns how many.
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

    async fn send(&self, key: &str, kind: envelope::Kind) -> courier_cluster::Result<()> {
        let bytes = Envelope { kind: Some(kind) }.encode_to_vec();
        self.queue.publish(key, Bytes::from(bytes)).await
    }
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

/// The only element of a one-element set.
fn single<'a>(set: &BTreeSet<&'a str>) -> Option<&'a str> {
    match set.len() {
        1 => set.first().copied(),
        _ => None,
    }
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
