//! Request and reply bodies of the HTTP API, exactly as they appear on the
//! wire. Request bodies refuse unknown fields, so a typo (`uid` for `uids`)
//! is a 422 that names the field rather than a silently empty push.
//!
//! A push's `data` is kept as the JSON text it arrived as ([`RawValue`]):
//! it is checked to be JSON and never parsed into a tree or written again.

use courier_cluster::{CometNode, NodeState};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `POST /users` and `POST /login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

/// `201` of `POST /users`.
#[derive(Debug, Serialize)]
pub(crate) struct Registered {
    pub(crate) uid: String,
}

/// A comet as a client needs it to connect.
#[derive(Debug, Serialize)]
pub(crate) struct CometAddr {
    pub(crate) id: String,
    pub(crate) tcp: String,
    /// The WebSocket address; omitted while comets serve none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) ws: String,
}

impl From<&CometNode> for CometAddr {
    fn from(c: &CometNode) -> Self {
        Self {
            id: c.id.clone(),
            tcp: c.tcp.clone(),
            ws: c.ws.clone(),
        }
    }
}

/// `200` of `POST /login`.
#[derive(Debug, Serialize)]
pub(crate) struct LoggedIn {
    pub(crate) uid: String,
    pub(crate) token: String,
    /// Seconds until the token expires.
    pub(crate) expires_in: u64,
    pub(crate) heartbeat_secs: u32,
    /// Comets to connect to, best first.
    pub(crate) comets: Vec<CometAddr>,
}

/// `POST /push/users`. `op` defaults to 0.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushUsers {
    pub(crate) uids: Vec<String>,
    #[serde(default)]
    pub(crate) op: u32,
    pub(crate) data: Box<RawValue>,
}

/// `POST /push/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushKeys {
    pub(crate) keys: Vec<String>,
    #[serde(default)]
    pub(crate) op: u32,
    pub(crate) data: Box<RawValue>,
}

/// `POST /push/rooms/{room}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushRoom {
    #[serde(default)]
    pub(crate) op: u32,
    pub(crate) data: Box<RawValue>,
}

/// `POST /push/all`. `rate` is connections per second per comet, 0 = no limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushAll {
    #[serde(default)]
    pub(crate) op: u32,
    pub(crate) data: Box<RawValue>,
    #[serde(default)]
    pub(crate) rate: u32,
}

/// `202` of every push.
#[derive(Debug, Serialize)]
pub(crate) struct Pushed {
    pub(crate) msg_id: String,
    /// The message's seq in the one stream it went to (one user's inbox, a
    /// room's history); absent for several users, keys and broadcasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seq: Option<u64>,
    /// The epoch of that seq.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) epoch: Option<u64>,
    /// Recipients that had this message already (a repeated
    /// `Idempotency-Key`): not stored or delivered again.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) repeats: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One comet's share of `GET /online`.
#[derive(Debug, Serialize)]
pub(crate) struct CometOnline {
    pub(crate) id: String,
    pub(crate) connections: u32,
}

/// `GET /online`.
#[derive(Debug, Serialize)]
pub(crate) struct OnlineReply {
    pub(crate) connections: u64,
    pub(crate) users: u64,
    pub(crate) comets: Vec<CometOnline>,
}

/// Query of `GET /online/users`.
#[derive(Debug, Deserialize)]
pub(crate) struct UsersPage {
    #[serde(default)]
    pub(crate) cursor: String,
    pub(crate) limit: Option<usize>,
}

/// `GET /online/users`.
#[derive(Debug, Serialize)]
pub(crate) struct OnlineUsers {
    pub(crate) users: Vec<String>,
    pub(crate) next_cursor: Option<String>,
}

/// `POST /admin/comets/{id}/drain`.
#[derive(Debug, Serialize)]
pub(crate) struct Draining {
    pub(crate) comet: String,
    /// Connections the comet held as its drain started.
    pub(crate) connections: u32,
}

/// Query of `GET /presence`.
#[derive(Debug, Deserialize)]
pub(crate) struct PresenceQuery {
    /// Comma-separated uids.
    pub(crate) uids: String,
}

/// `GET /presence`: the named users that are online, in the order named.
#[derive(Debug, Serialize)]
pub(crate) struct Presence {
    pub(crate) online: Vec<String>,
}

/// Query of `GET /online/rooms`.
#[derive(Debug, Deserialize)]
pub(crate) struct TopQuery {
    pub(crate) top: Option<usize>,
}

/// One room's connection count.
#[derive(Debug, Serialize)]
pub(crate) struct RoomOnline {
    pub(crate) room: String,
    pub(crate) connections: u64,
}

/// `GET /online/rooms?top=N`.
#[derive(Debug, Serialize)]
pub(crate) struct TopRooms {
    pub(crate) rooms: Vec<RoomOnline>,
}

/// One entry of `GET /nodes`.
#[derive(Debug, Serialize)]
pub(crate) struct NodeInfo {
    pub(crate) id: String,
    pub(crate) tcp: String,
    /// The WebSocket address; omitted while comets serve none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) ws: String,
    pub(crate) weight: u32,
    pub(crate) connections: u32,
    pub(crate) state: NodeState,
}

impl From<&CometNode> for NodeInfo {
    fn from(c: &CometNode) -> Self {
        Self {
            id: c.id.clone(),
            tcp: c.tcp.clone(),
            ws: c.ws.clone(),
            weight: c.weight,
            connections: c.connections,
            state: c.state,
        }
    }
}

/// Query of `GET /users/{uid}/messages` and `GET /rooms/{room}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessagesQuery {
    pub(crate) after_seq: Option<u64>,
    pub(crate) epoch: Option<u64>,
    pub(crate) limit: Option<usize>,
}

/// A page of a user's inbox or a room's history.
#[derive(Debug, Serialize)]
pub(crate) struct StreamPage {
    pub(crate) epoch: u64,
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    pub(crate) gap: bool,
    pub(crate) reset: bool,
    pub(crate) messages: Vec<StoredMessage>,
}

/// One stored message.
#[derive(Debug, Serialize)]
pub(crate) struct StoredMessage {
    pub(crate) msg_id: String,
    pub(crate) seq: u64,
    pub(crate) epoch: u64,
    pub(crate) from: String,
    pub(crate) to: Option<serde_json::Value>,
    pub(crate) op: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data_base64: Option<String>,
    pub(crate) sent_at_ms: i64,
}
