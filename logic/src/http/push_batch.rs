//! `POST /push/batch`: many independent pushes in one request, each with
//! its own target, data and idempotency key, answered one by one.
//!
//! Each push is checked and published exactly as its own route would do it
//! (the same names, limits, dedup and errors), and its result carries the
//! status that route would have answered. They run concurrently, so their
//! appends share the store's group commits and their envelopes the
//! producer's batches: one request of a hundred pushes costs the backend
//! one round trip instead of a hundred. The request itself is answered
//! `200` once every push has a result; only a body that does not parse, is
//! empty or holds more than [`MAX_BATCH`] pushes is refused as a whole.

use std::sync::Arc;

use axum::extract::State;
use courier_proto::names;
use futures::StreamExt;

use super::auth::PushKey;
use super::dto::{BatchPush, BatchPushed, BatchResult, PushBatch, MAX_BATCH};
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use super::push::{check_list, content, invalid_name, pushed};
use super::responses::PushFailures;
use crate::publish::Recipients;
use crate::state::LogicState;

/// Pushes of one batch in flight at once.
const CONCURRENCY: usize = 64;

/// `POST /push/batch`.
#[utoipa::path(
    post,
    path = "/api/v1/push/batch",
    operation_id = "push_batch",
    tag = "push",
    security(("api_key" = ["push"])),
    request_body = PushBatch,
    responses(
        (status = 200, description = "Every push has a result, in order: 202 (stored and queued) or the error its own route would have answered", body = BatchPushed),
        (status = 400, description = "Malformed JSON, or `pushes` empty or over 500", body = ErrorBody),
        PushFailures,
    ),
)]
pub(crate) async fn batch(
    State(shared): State<Arc<LogicState>>,
    PushKey(api_key): PushKey,
    Json(body): Json<PushBatch>,
) -> Result<axum::Json<BatchPushed>, ApiError> {
    let n = body.pushes.len();
    if n == 0 || n > MAX_BATCH {
        return Err(ApiError::invalid(format!(
            "pushes must hold 1-{MAX_BATCH} pushes"
        )));
    }
    let shared = &shared;
    let api_key = &api_key;
    let results = futures::stream::iter(body.pushes)
        .map(|push| async move { result(one(shared, api_key, push).await) })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    Ok(axum::Json(BatchPushed { results }))
}

/// One push of the batch, as its own route would do it.
async fn one(
    shared: &LogicState,
    api_key: &str,
    push: BatchPush,
) -> Result<super::dto::Pushed, ApiError> {
    if let Some(key) = &push.idempotency_key {
        names::check_dedup_key(key).map_err(|_| {
            ApiError::invalid("idempotency_key must be 1-128 visible ASCII characters")
        })?;
    }
    let content = content(
        shared,
        push.op,
        push.data,
        api_key.to_owned(),
        push.idempotency_key,
    )?;
    let to = &push.to;
    match (&to.users, &to.keys, &to.room, &to.all) {
        (Some(uids), None, None, None) => {
            check_list(shared, "uids", uids, names::check_uid)?;
            pushed(shared, Recipients::Users(uids), content).await
        }
        (None, Some(keys), None, None) => {
            check_list(shared, "keys", keys, names::check_key)?;
            pushed(shared, Recipients::Keys(keys), content).await
        }
        (None, None, Some(room), None) => {
            names::check_room(room).map_err(invalid_name)?;
            pushed(shared, Recipients::Room(room), content).await
        }
        (None, None, None, Some(all)) => {
            pushed(shared, Recipients::All { rate: all.rate }, content).await
        }
        _ => Err(ApiError::invalid(
            "to must name exactly one of users, keys, room and all",
        )),
    }
}

fn result(outcome: Result<super::dto::Pushed, ApiError>) -> BatchResult {
    match outcome {
        Ok(p) => BatchResult {
            status: 202,
            msg_id: Some(p.msg_id),
            seq: p.seq,
            epoch: p.epoch,
            repeats: Some(p.repeats),
            error: None,
        },
        Err(e) => BatchResult {
            status: e.status().as_u16(),
            msg_id: None,
            seq: None,
            epoch: None,
            repeats: None,
            error: Some(serde_json::json!({"code": e.code(), "message": e.message()})),
        },
    }
}
