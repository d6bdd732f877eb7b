//! `GET /users/{uid}/messages` and `GET /rooms/{room}/messages`: a page of a
//! user's inbox or a room's history, for backends (API key).
//!
//! `after_seq` (or `before_seq`) and `epoch` are a reader's position, as a
//! client's `Sync` carries them: with the stream's epoch (or none), the page
//! is the oldest messages after `after_seq`, or the newest below
//! `before_seq` (paging back through history); with another epoch, `reset`
//! says the store does not have that one and the page is read as if no
//! position had been given. `gap` says messages asked for are gone, older
//! than the retention.

use std::sync::Arc;

use axum::extract::State;
use courier_cluster::inbox::{Start, Stream};
use courier_proto::client::{target, Message};
use courier_proto::{names, Position};
use prost::Message as _;

use super::auth::ReadKey;
use super::dto::{MessagesQuery, StoredMessage, StreamPage};
use super::error::{ApiError, ErrorBody};
use super::extract::{Path, Query};
use super::responses::{BackendUnavailable, ReadUnauthorized};
use crate::state::LogicState;
use crate::streams;

/// Default page size.
const DEFAULT_LIMIT: usize = 100;

/// A page of `uid`'s inbox.
#[utoipa::path(
    get,
    path = "/api/v1/users/{uid}/messages",
    operation_id = "user_messages",
    tag = "messages",
    security(("api_key" = ["read"])),
    params(("uid" = String, Path, description = "The user: 1-64 bytes, no control characters", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"), MessagesQuery),
    responses(
        (status = 200, description = "A page of the user's inbox", body = StreamPage),
        (status = 400, description = "An invalid uid, a bad or unknown query parameter, `limit` out of range, or both `after_seq` and `before_seq`", body = ErrorBody),
        ReadUnauthorized,
        BackendUnavailable,
    ),
)]
pub(crate) async fn user(
    State(shared): State<Arc<LogicState>>,
    _: ReadKey,
    Path(uid): Path<String>,
    Query(query): Query<MessagesQuery>,
) -> Result<axum::Json<StreamPage>, ApiError> {
    names::check_uid(&uid).map_err(|e| ApiError::invalid(e.to_string()))?;
    page(&shared, Stream::User(&uid), &query).await
}

/// A page of `room`'s history.
#[utoipa::path(
    get,
    path = "/api/v1/rooms/{room}/messages",
    operation_id = "room_messages",
    tag = "messages",
    security(("api_key" = ["read"])),
    params(("room" = String, Path, description = "The room: 1-64 bytes, no control characters", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"), MessagesQuery),
    responses(
        (status = 200, description = "A page of the room's history", body = StreamPage),
        (status = 400, description = "An invalid room name, a bad or unknown query parameter, `limit` out of range, or both `after_seq` and `before_seq`", body = ErrorBody),
        ReadUnauthorized,
        BackendUnavailable,
    ),
)]
pub(crate) async fn room(
    State(shared): State<Arc<LogicState>>,
    _: ReadKey,
    Path(room): Path<String>,
    Query(query): Query<MessagesQuery>,
) -> Result<axum::Json<StreamPage>, ApiError> {
    names::check_room(&room).map_err(|e| ApiError::invalid(e.to_string()))?;
    page(&shared, Stream::Room(&room), &query).await
}

async fn page(
    shared: &LogicState,
    stream: Stream<'_>,
    query: &MessagesQuery,
) -> Result<axum::Json<StreamPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=streams::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1-{}",
            streams::MAX_PAGE
        )));
    }
    let after = Position::new(query.epoch.unwrap_or(0), query.after_seq.unwrap_or(0));
    let start = streams::start(stream, after, query.before_seq.unwrap_or(0))
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    // A backend reads from its position; the ack is where a device with no
    // position starts, not a backend.
    let start = match start {
        Start::Acked => Start::After(Position::NONE),
        other => other,
    };
    let page = streams::read(shared.inbox.as_ref(), stream, start, limit, 0).await?;
    let mut messages = Vec::with_capacity(page.messages.len());
    for bytes in page.messages {
        let message = Message::decode(bytes).map_err(|e| {
            ApiError::unavailable(&courier_cluster::Error::Corrupt {
                backend: "inbox",
                message: e.to_string(),
            })
        })?;
        messages.push(stored(message));
    }
    Ok(axum::Json(StreamPage {
        epoch: page.head.epoch,
        first_seq: page.head.first_seq,
        last_seq: page.head.last_seq,
        gap: page.gap,
        reset: page.reset,
        messages,
    }))
}

/// A stored message as the API shows it: `data` as text when it is UTF-8
/// (the JSON text of an HTTP push, a chat line), else in base64.
fn stored(m: Message) -> StoredMessage {
    let to = m.to.and_then(|t| t.kind).map(|kind| match kind {
        target::Kind::User(uid) => serde_json::json!({ "user": uid }),
        target::Kind::Room(room) => serde_json::json!({ "room": room }),
        target::Kind::Key(key) => serde_json::json!({ "key": key }),
        target::Kind::All(_) => serde_json::json!({ "all": true }),
    });
    let (data, data_base64) = match String::from_utf8(m.data.to_vec()) {
        Ok(text) => (Some(text), None),
        Err(_) => (None, Some(base64(&m.data))),
    };
    StoredMessage {
        msg_id: m.msg_id,
        seq: m.seq,
        epoch: m.epoch,
        from: m.from,
        to,
        op: m.op,
        data,
        data_base64,
        sent_at_ms: m.sent_at_ms,
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
