//! `POST /push/*`: a backend sends a message to users, keys, a room or
//! everyone. `data` is any JSON value; the message carries its JSON text as
//! it arrived. `202 {msg_id, seq, epoch}` means the message is stored (in
//! each user's inbox, in the room's history) and every envelope was accepted
//! by the queue; `seq` and `epoch` are there when the push went to one
//! stream (one user, a room). Uids, keys and room names follow the
//! protocol's rules ([`courier_proto::names`]), the same ones comets apply.
//!
//! An `Idempotency-Key` header makes a retry safe: a repeat within the
//! window, from the same API key, returns the original `msg_id` and `seq`,
//! stores nothing and publishes the original again (so a retry after a 503
//! is delivered live; clients drop a copy they have). The same key with a
//! different target, op or data is refused with 422.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use courier_proto::names::{self, InvalidName};
use serde_json::value::RawValue;

use super::auth::PushKey;
use super::dto::{PushAll, PushKeys, PushRoom, PushUsers, Pushed};
use super::error::{ApiError, ErrorBody};
use super::extract::{IdempotencyKey, Json, Path};
use super::responses::PushFailures;
use crate::publish::{Content, Dedup, Recipients};
use crate::state::LogicState;

type Accepted = (StatusCode, axum::Json<Pushed>);

/// Pushes to every connection of each uid.
#[utoipa::path(
    post,
    path = "/api/v1/push/users",
    operation_id = "push_users",
    tag = "push",
    security(("api_key" = ["push"])),
    params(IdempotencyKey),
    request_body = PushUsers,
    responses(
        (status = 202, description = "Stored and queued for delivery", body = Pushed),
        (status = 400, description = "Malformed JSON, a bad `Idempotency-Key`, or `uids` empty, over the most per push or with an invalid uid", body = ErrorBody),
        (status = 422, description = "The `Idempotency-Key` was used for a different push within the window", body = ErrorBody),
        PushFailures,
    ),
)]
pub(crate) async fn users(
    State(shared): State<Arc<LogicState>>,
    PushKey(api_key): PushKey,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<PushUsers>,
) -> Result<Accepted, ApiError> {
    check_list(&shared, "uids", &body.uids, names::check_uid)?;
    let content = content(&shared, body.op, body.data, api_key, key)?;
    publish(&shared, Recipients::Users(&body.uids), content).await
}

/// Pushes to these connection keys.
#[utoipa::path(
    post,
    path = "/api/v1/push/keys",
    operation_id = "push_keys",
    tag = "push",
    security(("api_key" = ["push"])),
    params(IdempotencyKey),
    request_body = PushKeys,
    responses(
        (status = 202, description = "Stored and queued for delivery", body = Pushed),
        (status = 400, description = "Malformed JSON, a bad `Idempotency-Key`, or `keys` empty, over the most per push or with an invalid key", body = ErrorBody),
        (status = 422, description = "The `Idempotency-Key` was used for a different push within the window", body = ErrorBody),
        PushFailures,
    ),
)]
pub(crate) async fn keys(
    State(shared): State<Arc<LogicState>>,
    PushKey(api_key): PushKey,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<PushKeys>,
) -> Result<Accepted, ApiError> {
    check_list(&shared, "keys", &body.keys, names::check_key)?;
    let content = content(&shared, body.op, body.data, api_key, key)?;
    publish(&shared, Recipients::Keys(&body.keys), content).await
}

/// Pushes to every member of a room.
#[utoipa::path(
    post,
    path = "/api/v1/push/rooms/{room}",
    operation_id = "push_room",
    tag = "push",
    security(("api_key" = ["push"])),
    params(("room" = String, Path, description = "The room, by the protocol's naming rules: 1-64 bytes, no control characters", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"), IdempotencyKey),
    request_body = PushRoom,
    responses(
        (status = 202, description = "Stored and queued for delivery", body = Pushed),
        (status = 400, description = "Malformed JSON, a bad `Idempotency-Key`, or an invalid room name", body = ErrorBody),
        (status = 422, description = "The `Idempotency-Key` was used for a different push within the window", body = ErrorBody),
        PushFailures,
    ),
)]
pub(crate) async fn room(
    State(shared): State<Arc<LogicState>>,
    PushKey(api_key): PushKey,
    IdempotencyKey(key): IdempotencyKey,
    Path(room): Path<String>,
    Json(body): Json<PushRoom>,
) -> Result<Accepted, ApiError> {
    names::check_room(&room).map_err(invalid_name)?;
    let content = content(&shared, body.op, body.data, api_key, key)?;
    publish(&shared, Recipients::Room(&room), content).await
}

/// Pushes to everyone (best effort).
#[utoipa::path(
    post,
    path = "/api/v1/push/all",
    operation_id = "push_all",
    tag = "push",
    security(("api_key" = ["push"])),
    params(IdempotencyKey),
    request_body = PushAll,
    responses(
        (status = 202, description = "Stored and queued for delivery", body = Pushed),
        (status = 400, description = "Malformed JSON or a bad `Idempotency-Key`", body = ErrorBody),
        (status = 422, description = "The `Idempotency-Key` was used for a different push within the window", body = ErrorBody),
        PushFailures,
    ),
)]
pub(crate) async fn all(
    State(shared): State<Arc<LogicState>>,
    PushKey(api_key): PushKey,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<PushAll>,
) -> Result<Accepted, ApiError> {
    let content = content(&shared, body.op, body.data, api_key, key)?;
    publish(&shared, Recipients::All { rate: body.rate }, content).await
}

async fn publish(
    shared: &LogicState,
    to: Recipients<'_>,
    content: Content,
) -> Result<Accepted, ApiError> {
    let pushed = pushed(shared, to, content).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(pushed)))
}

/// Publishes `content` to `to`: what a 202 says of it.
pub(super) async fn pushed(
    shared: &LogicState,
    to: Recipients<'_>,
    content: Content,
) -> Result<Pushed, ApiError> {
    let accepted = shared.publisher.publish(to, content).await?;
    tracing::debug!(msg_id = %accepted.msg_id, envelopes = accepted.envelopes, "pushed");
    Ok(Pushed {
        msg_id: accepted.msg_id,
        seq: accepted.position.map(|p| p.seq),
        epoch: accepted.position.map(|p| p.epoch),
        repeats: accepted.repeats,
    })
}

pub(super) fn content(
    shared: &LogicState,
    op: u32,
    data: Box<RawValue>,
    api_key: String,
    idempotency_key: Option<String>,
) -> Result<Content, ApiError> {
    let text: Box<str> = data.into();
    let max = shared.config.max_data;
    if text.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "data_too_large",
            format!("data is {} bytes; at most {max}", text.len()),
        ));
    }
    Ok(Content {
        from: String::new(),
        op,
        data: Bytes::from(String::from(text)),
        dedup: idempotency_key.map(|key| Dedup::Http { api_key, key }),
    })
}

pub(super) fn check_list(
    shared: &LogicState,
    field: &str,
    items: &[String],
    check: fn(&str) -> Result<(), InvalidName>,
) -> Result<(), ApiError> {
    let max = shared.config.max_recipients;
    if items.is_empty() {
        return Err(ApiError::invalid(format!("{field} must not be empty")));
    }
    if items.len() > max {
        return Err(ApiError::invalid(format!(
            "{field} names {} recipients; at most {max} per push",
            items.len()
        )));
    }
    items
        .iter()
        .try_for_each(|item| check(item).map_err(|e| ApiError::invalid(format!("{field}: {e}"))))
}

pub(super) fn invalid_name(e: InvalidName) -> ApiError {
    ApiError::invalid(e.to_string())
}
