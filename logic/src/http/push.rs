//! `POST /push/*`: a backend sends a message to users, keys, a room or
//! everyone. `data` is any JSON value; the message carries its JSON text.
//! `202 {msg_id}` means every envelope was accepted by the queue.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;

use super::auth::ApiKey;
use super::dto::{PushAll, PushKeys, PushRoom, PushUsers, Pushed};
use super::error::ApiError;
use super::extract::{Json, Path};
use crate::publish::{Content, Recipients};
use crate::state::Shared;

/// Longest uid, in bytes.
const MAX_UID: usize = 64;
/// Longest connection key or room name, in bytes.
const MAX_NAME: usize = 256;

type Accepted = (StatusCode, axum::Json<Pushed>);

/// Pushes to every connection of each uid.
pub(crate) async fn users(
    State(shared): State<Arc<Shared>>,
    _: ApiKey,
    Json(body): Json<PushUsers>,
) -> Result<Accepted, ApiError> {
    check_list(&shared, "uids", &body.uids, MAX_UID)?;
    let content = content(&shared, body.op, &body.data)?;
    publish(&shared, Recipients::Users(&body.uids), content).await
}

/// Pushes to these connection keys.
pub(crate) async fn keys(
    State(shared): State<Arc<Shared>>,
    _: ApiKey,
    Json(body): Json<PushKeys>,
) -> Result<Accepted, ApiError> {
    check_list(&shared, "keys", &body.keys, MAX_NAME)?;
    let content = content(&shared, body.op, &body.data)?;
    publish(&shared, Recipients::Keys(&body.keys), content).await
}

/// Pushes to every member of a room.
pub(crate) async fn room(
    State(shared): State<Arc<Shared>>,
    _: ApiKey,
    Path(room): Path<String>,
    Json(body): Json<PushRoom>,
) -> Result<Accepted, ApiError> {
    check_name("room", &room, MAX_NAME)?;
    let content = content(&shared, body.op, &body.data)?;
    publish(&shared, Recipients::Room(&room), content).await
}

/// Pushes to everyone (best effort).
pub(crate) async fn all(
    State(shared): State<Arc<Shared>>,
    _: ApiKey,
    Json(body): Json<PushAll>,
) -> Result<Accepted, ApiError> {
    let content = content(&shared, body.op, &body.data)?;
    publish(&shared, Recipients::All { rate: body.rate }, content).await
}

async fn publish(
    shared: &Shared,
    to: Recipients<'_>,
    content: Content,
) -> Result<Accepted, ApiError> {
    let accepted = shared.publisher.publish(to, content).await?;
    tracing::debug!(msg_id = %accepted.msg_id, envelopes = accepted.envelopes, "pushed");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Pushed {
            msg_id: accepted.msg_id,
        }),
    ))
}

fn content(shared: &Shared, op: u32, data: &serde_json::Value) -> Result<Content, ApiError> {
    // The value came from JSON, so writing it back cannot fail; map anyway.
    let text = serde_json::to_vec(data).map_err(|e| ApiError::invalid(e.to_string()))?;
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
        data: Bytes::from(text),
        client_msg_id: None,
    })
}

fn check_list(
    shared: &Shared,
    field: &str,
    items: &[String],
    max_len: usize,
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
        .try_for_each(|item| check_name(field, item, max_len))
}

fn check_name(field: &str, value: &str, max_len: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max_len {
        return Err(ApiError::invalid(format!(
            "each of {field} must be 1-{max_len} bytes"
        )));
    }
    Ok(())
}
