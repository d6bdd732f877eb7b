//! Operating the cluster over HTTP (a key with the `admin` scope).
//!
//! `POST /admin/comets/{id}/drain` asks that comet (over its gRPC service,
//! with the cluster secret) to drain: it marks itself draining in discovery,
//! stops taking clients and moves the ones it holds to the other comets in
//! waves, then exits. The reply comes as soon as the comet has started.
//!
//! `POST /users/{uid}/disconnect` ends every session of a user and has each
//! comet holding one close it with a `Kick` carrying the reason, directly
//! over gRPC (not through the queue), so it takes effect at once. A comet
//! that does not answer closes its connections at their next session
//! check, which logic then refuses. With `revoke_tokens`, every token of
//! the user issued until then is revoked first, so none connects again.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use courier_proto::comet::{DrainRequest, KickRequest};
use courier_proto::names;

use super::auth::AdminKey;
use super::dto::{Disconnect, Disconnected, Draining, MAX_REASON};
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Path};
use super::responses::BackendUnavailable;
use crate::comet_calls::call_comet;
use crate::state::LogicState;

/// How long the comet may take to answer.
const DRAIN_CALL: Duration = Duration::from_secs(5);

/// `POST /admin/comets/{id}/drain`.
#[utoipa::path(
    post,
    path = "/api/v1/admin/comets/{id}/drain",
    operation_id = "drain_comet",
    tag = "admin",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The comet's id in discovery")),
    responses(
        (status = 202, description = "The comet has started draining", body = Draining),
        (status = 400, description = "A path that is not valid UTF-8", body = ErrorBody),
        (status = 401, description = "No API key, or one without the `admin` scope", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No comet with this id is registered", body = ErrorBody),
        (status = 503, description = "The comet did not answer", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait: 1"))),
    ),
)]
pub(crate) async fn drain_comet(
    State(shared): State<Arc<LogicState>>,
    _: AdminKey,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<Draining>), ApiError> {
    let Some(comet) = shared.comets.find(&id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "comet_not_found",
            format!("no comet {id:?} is registered"),
        ));
    };
    let reply = call_comet(&shared, &comet.grpc, DRAIN_CALL, |mut c| async move {
        c.drain(DrainRequest {}).await
    })
    .await
    .map_err(|e| {
        tracing::warn!(comet = %id, error = %e, "cannot ask the comet to drain");
        ApiError::busy(
            "comet_unreachable",
            "the comet did not answer; retry shortly",
        )
    })?;
    tracing::info!(comet = %id, connections = reply.connections, "comet draining on request");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Draining {
            comet: id,
            connections: reply.connections,
        }),
    ))
}

/// The reason a disconnect gives when the operator gives none.
const DEFAULT_REASON: &str = "disconnected by the operator";
/// How long one comet may take to close the connections.
const KICK_CALL: Duration = Duration::from_secs(2);

/// `POST /users/{uid}/disconnect`.
#[utoipa::path(
    post,
    path = "/api/v1/users/{uid}/disconnect",
    operation_id = "disconnect_user",
    tag = "admin",
    security(("api_key" = ["admin"])),
    params(("uid" = String, Path, description = "The user: 1-64 bytes, no control characters", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")),
    request_body = Disconnect,
    responses(
        (status = 200, description = "Every session of the user ended and its connections closed (none is not an error)", body = Disconnected),
        (status = 400, description = "An invalid uid, or a reason too long or with control characters", body = ErrorBody),
        (status = 401, description = "No API key, or one without the `admin` scope", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "The body is over `body_limit`", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "A mistyped or unknown field", body = ErrorBody),
        BackendUnavailable,
    ),
)]
pub(crate) async fn disconnect_user(
    State(shared): State<Arc<LogicState>>,
    _: AdminKey,
    Path(uid): Path<String>,
    Json(body): Json<Disconnect>,
) -> Result<axum::Json<Disconnected>, ApiError> {
    names::check_uid(&uid).map_err(|e| ApiError::invalid(e.to_string()))?;
    if body.reason.len() > MAX_REASON || body.reason.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "reason must be at most {MAX_REASON} bytes with no control characters"
        )));
    }
    let reason = match body.reason.is_empty() {
        true => DEFAULT_REASON.to_owned(),
        false => body.reason,
    };
    if body.revoke_tokens {
        // Before the sessions end: a client reconnecting at once is refused.
        shared.revocations.revoke_all(&uid).await?;
    }
    let sessions = shared.sessions.user_sessions(&uid).await?;
    // Ended first: a check from a comet that misses the kick is refused.
    for session in &sessions {
        shared.sessions.end(session).await?;
    }
    let mut by_comet: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for session in &sessions {
        by_comet
            .entry(session.comet_id.as_str())
            .or_default()
            .push(session.key.clone());
    }
    let kicks = by_comet.into_iter().map(|(comet_id, keys)| {
        let (shared, reason) = (&shared, reason.clone());
        async move {
            let Some(comet) = shared.comets.find(comet_id) else {
                return 0;
            };
            let call = call_comet(shared, &comet.grpc, KICK_CALL, |mut c| async move {
                c.kick(KickRequest { keys, reason }).await
            });
            match call.await {
                Ok(reply) => reply.kicked,
                Err(e) => {
                    tracing::warn!(comet = %comet_id, error = %e, "cannot ask the comet to close a user's connections; its session checks will");
                    0
                }
            }
        }
    });
    let kicked: u32 = futures::future::join_all(kicks).await.into_iter().sum();
    tracing::info!(%uid, sessions = sessions.len(), kicked, "user disconnected by the operator");
    Ok(axum::Json(Disconnected {
        uid,
        connections: u32::try_from(sessions.len()).unwrap_or(u32::MAX),
    }))
}
