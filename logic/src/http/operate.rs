//! Operating the cluster over HTTP (a key with the `admin` scope).
//!
//! `POST /admin/comets/{id}/drain` asks that comet (over its gRPC service,
//! with the cluster secret) to drain: it marks itself draining in discovery,
//! stops taking clients and moves the ones it holds to the other comets in
//! waves, then exits. The reply comes as soon as the comet has started.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use courier_proto::comet::DrainRequest;

use super::auth::AdminKey;
use super::dto::Draining;
use super::error::{ApiError, ErrorBody};
use super::extract::Path;
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
