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
use courier_proto::comet::comet_client::CometClient;
use courier_proto::comet::DrainRequest;

use super::auth::AdminKey;
use super::dto::Draining;
use super::error::ApiError;
use super::extract::Path;
use crate::state::LogicState;

/// How long the comet may take to answer.
const DRAIN_CALL: Duration = Duration::from_secs(5);

/// `POST /admin/comets/{id}/drain`.
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
    let unreachable = |e: &dyn std::fmt::Display| {
        tracing::warn!(comet = %id, error = %e, "cannot ask the comet to drain");
        ApiError::busy(
            "comet_unreachable",
            "the comet did not answer; retry shortly",
        )
    };
    let call = async {
        let channel = courier_runtime::tls::endpoint(&comet.grpc, shared.comet_tls.as_ref())
            .map_err(|e| unreachable(&e))?
            .connect_timeout(DRAIN_CALL)
            .connect()
            .await
            .map_err(|e| unreachable(&e))?;
        let mut client = CometClient::with_interceptor(channel, shared.cluster_secret.stamper());
        client
            .drain(DrainRequest {})
            .await
            .map_err(|e| unreachable(&e))
    };
    let reply = tokio::time::timeout(DRAIN_CALL, call)
        .await
        .map_err(|e| unreachable(&e))??
        .into_inner();
    tracing::info!(comet = %id, connections = reply.connections, "comet draining on request");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Draining {
            comet: id,
            connections: reply.connections,
        }),
    ))
}
