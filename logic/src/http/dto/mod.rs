//! Request and reply bodies of the HTTP API, exactly as they appear on the
//! wire. Request bodies refuse unknown fields, so a typo (`uid` for `uids`)
//! is a 422 that names the field rather than a silently empty push.
//!
//! A push's `data` is kept as the JSON text it arrived as ([`RawValue`]):
//! it is checked to be JSON and never parsed into a tree or written again.

use courier_cluster::{CometNode, NodeState};
use courier_proto::names;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use crate::accounts::{MAX_PASSWORD, MAX_USERNAME, MIN_PASSWORD};
use crate::streams::MAX_PAGE;

mod batch;
mod rooms;

pub(crate) use batch::*;
pub(crate) use rooms::*;

// The bounds below appear as literals in `#[schema]`/`#[param]` attributes,
// which take no constants; these keep them in step with the code that
// enforces them.
const _: () = assert!(MAX_USERNAME == 64 && MIN_PASSWORD == 6 && MAX_PASSWORD == 128);
const _: () = assert!(MAX_PAGE == 500);
const _: () = assert!(names::MAX_UID_LEN == 64 && names::MAX_KEY_LEN == 128);

/// A name by the protocol's rules ([`courier_proto::names`]): no control
/// characters (its bound is in bytes, which a schema cannot say).
pub(crate) const NAME_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]+$";

/// `POST /users` and `POST /login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    /// 1-64 ASCII letters, digits, `_`, `.` or `-`; it is also the uid.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.-]+$")]
    pub(crate) username: String,
    /// 6-128 bytes.
    #[schema(min_length = 6, max_length = 128)]
    pub(crate) password: String,
}

/// `POST /password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    /// The current password.
    #[schema(min_length = 1, max_length = 128)]
    pub(crate) old_password: String,
    /// The new one: 6-128 bytes.
    #[schema(min_length = 6, max_length = 128)]
    pub(crate) new_password: String,
}

/// `201` of `POST /users`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Registered {
    pub(crate) uid: String,
}

/// A comet as a client needs it to connect.
#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoggedIn {
    pub(crate) uid: String,
    pub(crate) token: String,
    /// Seconds until the token expires.
    pub(crate) expires_in: u64,
    pub(crate) heartbeat_secs: u32,
    /// Comets to connect to, best first.
    pub(crate) comets: Vec<CometAddr>,
    /// Rooms to join at `Auth`, as the application's connect hook named
    /// them (`POST /connect` only; the room rules still apply).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) rooms: Vec<String>,
}

/// Longest credentials `POST /connect` passes on, in bytes.
pub(crate) const MAX_CREDENTIALS: usize = 4096;

/// `POST /connect`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppCredentials {
    /// The application's own credentials (a session cookie, an OAuth
    /// token...), passed to its connect hook as they are: 1-4096 bytes.
    #[schema(min_length = 1, max_length = 4096)]
    pub(crate) credentials: String,
}

/// `POST /push/users`. `op` defaults to 0.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushUsers {
    /// The users (see [`uids_schema`]).
    #[schema(schema_with = uids_schema)]
    pub(crate) uids: Vec<String>,
    #[serde(default)]
    // A u32: utoipa's `int32` would tell clients 2^31-1 is the largest.
    #[schema(format = Int64, maximum = 4294967295_u64)]
    pub(crate) op: u32,
    /// Any JSON value; delivered as its JSON text, byte for byte.
    #[schema(value_type = Value)]
    pub(crate) data: Box<RawValue>,
}

/// `POST /push/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushKeys {
    /// The connection keys (see [`keys_schema`]).
    #[schema(schema_with = keys_schema)]
    pub(crate) keys: Vec<String>,
    #[serde(default)]
    #[schema(format = Int64, maximum = 4294967295_u64)]
    pub(crate) op: u32,
    /// Any JSON value; delivered as its JSON text, byte for byte.
    #[schema(value_type = Value)]
    pub(crate) data: Box<RawValue>,
}

/// `POST /push/rooms/{room}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushRoom {
    #[serde(default)]
    #[schema(format = Int64, maximum = 4294967295_u64)]
    pub(crate) op: u32,
    /// Any JSON value; delivered as its JSON text, byte for byte.
    #[schema(value_type = Value)]
    pub(crate) data: Box<RawValue>,
}

/// `POST /push/all`. `rate` is connections per second per comet, 0 = no limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushAll {
    #[serde(default)]
    #[schema(format = Int64, maximum = 4294967295_u64)]
    pub(crate) op: u32,
    /// Any JSON value; delivered as its JSON text, byte for byte.
    #[schema(value_type = Value)]
    pub(crate) data: Box<RawValue>,
    #[serde(default)]
    #[schema(format = Int64, maximum = 4294967295_u64)]
    pub(crate) rate: u32,
}

/// `202` of every push.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Pushed {
    pub(crate) msg_id: String,
    /// The message's seq in the one stream it went to (one user's inbox, a
    /// room's history); absent for several users, keys and broadcasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) seq: Option<u64>,
    /// The epoch of that seq.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
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
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CometOnline {
    pub(crate) id: String,
    pub(crate) connections: u32,
}

/// `GET /online`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OnlineReply {
    pub(crate) connections: u64,
    pub(crate) users: u64,
    pub(crate) comets: Vec<CometOnline>,
}

/// Query of `GET /online/users`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsersPage {
    /// The `next_cursor` of the previous page; empty or absent for the first.
    #[serde(default)]
    pub(crate) cursor: String,
    /// Page size, 1-1000; 100 if absent.
    #[param(minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<usize>,
}

/// `GET /online/users`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OnlineUsers {
    pub(crate) users: Vec<String>,
    /// The `cursor` of the next page; null after the last.
    pub(crate) next_cursor: Option<String>,
}

/// `POST /admin/comets/{id}/drain`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Draining {
    pub(crate) comet: String,
    /// Connections the comet held as its drain started.
    pub(crate) connections: u32,
}

/// Query of `GET /presence`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PresenceQuery {
    /// Comma-separated uids: 1-100 of them, each 1-64 bytes.
    #[param(
        min_length = 1,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^,\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub(crate) uids: String,
}

/// `GET /presence`: the named users that are online, in the order named.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Presence {
    pub(crate) online: Vec<String>,
}

/// Query of `GET /online/rooms`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TopQuery {
    /// How many rooms, 1-1000; 10 if absent.
    #[param(minimum = 1, maximum = 1000)]
    pub(crate) top: Option<usize>,
}

/// One room's connection count.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RoomOnline {
    pub(crate) room: String,
    pub(crate) connections: u64,
}

/// `GET /online/rooms?top=N`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopRooms {
    pub(crate) rooms: Vec<RoomOnline>,
}

/// One entry of `GET /nodes`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeInfo {
    pub(crate) id: String,
    pub(crate) tcp: String,
    /// The WebSocket address; omitted while comets serve none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) ws: String,
    pub(crate) weight: u32,
    pub(crate) connections: u32,
    #[schema(schema_with = node_state_schema)]
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

/// [`NodeState`] as the wire carries it: each variant's snake_case name.
fn node_state_schema() -> Object {
    // Naming every variant here makes a new one a compile error until it is
    // listed; its wire name comes from serde, not from this code.
    let all = [NodeState::Serving, NodeState::Draining].map(|s| match s {
        NodeState::Serving | NodeState::Draining => s,
    });
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(
            all.iter().filter_map(|s| serde_json::to_value(s).ok()),
        ))
        .description(Some(
            "Whether the comet takes new clients (`draining`: it is moving its clients away).",
        ))
        .build()
}

/// `uids` of `POST /push/users`.
fn uids_schema() -> utoipa::openapi::Array {
    names_schema(
        names::MAX_UID_LEN,
        "The uids: at least one, at most the server's `max_recipients` (default 1000); \
         each 1-64 bytes with no control characters.",
    )
}

/// `keys` of `POST /push/keys`.
fn keys_schema() -> utoipa::openapi::Array {
    names_schema(
        names::MAX_KEY_LEN,
        "The connection keys: at least one, at most the server's `max_recipients` \
         (default 1000); each 1-128 bytes with no control characters.",
    )
}

/// A non-empty list of names of at most `max` bytes each.
fn names_schema(max: usize, description: &str) -> utoipa::openapi::Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(max))
                .pattern(Some(NAME_PATTERN)),
        )
        .min_items(Some(1))
        .description(Some(description))
        .build()
}

/// Query of `GET /users/{uid}/messages` and `GET /rooms/{room}/messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MessagesQuery {
    /// The last seq the reader holds; the page is the oldest messages after
    /// it (0 if absent).
    pub(crate) after_seq: Option<u64>,
    /// Page back instead: the page is the newest messages below this seq
    /// (`last_seq + 1` for the very newest). Not with `after_seq`.
    #[param(minimum = 1)]
    pub(crate) before_seq: Option<u64>,
    /// The epoch of `after_seq` or `before_seq`; another epoch than the
    /// stream's gives `reset` and a page read as if none had been given.
    pub(crate) epoch: Option<u64>,
    /// Page size, 1-500; 100 if absent.
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<usize>,
}

/// A page of a user's inbox or a room's history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamPage {
    pub(crate) epoch: u64,
    /// The oldest seq the stream holds.
    pub(crate) first_seq: u64,
    /// The newest seq the stream holds.
    pub(crate) last_seq: u64,
    /// Messages asked for are gone (older than the retention): after
    /// `after_seq` and before the first returned, or (paging back) before
    /// the first returned, the oldest held.
    pub(crate) gap: bool,
    /// The store does not have the epoch asked for: the page is read as if
    /// no position had been given.
    pub(crate) reset: bool,
    pub(crate) messages: Vec<StoredMessage>,
}

/// One stored message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StoredMessage {
    pub(crate) msg_id: String,
    pub(crate) seq: u64,
    pub(crate) epoch: u64,
    pub(crate) from: String,
    /// Whom it was sent to: `{"user": uid}`, `{"room": room}`,
    /// `{"key": key}` or `{"all": true}`; null if the message names none.
    pub(crate) to: Option<serde_json::Value>,
    pub(crate) op: u32,
    /// The message's data as text, when it is UTF-8 (an HTTP push's JSON
    /// text, a chat line).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) data: Option<String>,
    /// The message's data in standard base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) data_base64: Option<String>,
    pub(crate) sent_at_ms: i64,
}

/// `GET /admin/store`: the store of record's shards, routing and moves.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StoreStatusBody {
    /// How many buckets streams hash to.
    pub(crate) buckets: u32,
    /// The routing table's version (bumped by every move).
    pub(crate) routing_version: u64,
    pub(crate) shards: Vec<ShardBody>,
    /// Moves this logic ran or is running, oldest first.
    pub(crate) moves: Vec<MoveBody>,
}

/// One shard of the store.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ShardBody {
    pub(crate) name: String,
    /// This logic reached the shard and applied its schema.
    pub(crate) ready: bool,
    /// Buckets routed here.
    pub(crate) buckets: u32,
    /// Those buckets as runs, `first-last`.
    pub(crate) ranges: Vec<String>,
    pub(crate) nodes: Vec<NodeBody>,
}

/// One node of a shard, as the last probe found it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeBody {
    /// `host:port`.
    pub(crate) host: String,
    /// `primary`, `standby`, or `down` (it did not answer the last probe).
    pub(crate) role: String,
    /// A standby within the lag bound: history reads go here.
    pub(crate) readable: bool,
    /// Replay lag in ms; absent when the node did not answer or is the
    /// primary.
    pub(crate) lag_ms: Option<u64>,
}

/// One bucket move.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MoveBody {
    pub(crate) bucket: u32,
    pub(crate) from: String,
    pub(crate) to: String,
    /// `copying`, `fenced`, `cleaning_up`, `done` or `failed`.
    pub(crate) state: String,
    /// Messages copied.
    pub(crate) messages: u64,
    /// Streams in the bucket when it was fenced.
    pub(crate) streams: u64,
    /// How long writes of the bucket were held, in ms.
    pub(crate) fenced_ms: Option<u64>,
    pub(crate) error: Option<String>,
}

/// `POST /admin/store/moves`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveRequest {
    /// The buckets to move, in order: 1-1024 distinct buckets, each below
    /// the store's bucket count.
    #[schema(min_items = 1, max_items = 1024)]
    pub(crate) buckets: Vec<u32>,
    /// The shard to move them to, by its configured name.
    #[schema(min_length = 1, max_length = 64)]
    pub(crate) to: String,
}

/// `202` of `POST /admin/store/moves`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MovesStarted {
    pub(crate) buckets: Vec<u32>,
    pub(crate) to: String,
}

/// Longest reason of `POST /users/{uid}/disconnect`, in bytes.
pub(crate) const MAX_REASON: usize = 256;

/// `POST /users/{uid}/disconnect`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Disconnect {
    /// Shown to the user's clients (`Kick{reason}`): at most 256 bytes, no
    /// control characters. Default: "disconnected by the operator".
    #[serde(default)]
    #[schema(max_length = 256)]
    pub(crate) reason: String,
    /// Also revoke every token of the user issued until now, so that none
    /// can connect again (default false: the user may reconnect).
    #[serde(default)]
    pub(crate) revoke_tokens: bool,
}

/// `200` of `POST /users/{uid}/disconnect`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Disconnected {
    pub(crate) uid: String,
    /// The user's connections that were ended (their sessions end at
    /// once; each comet that answered has closed its connections).
    pub(crate) connections: u32,
}
