//! Operating the store of record over HTTP (a key with the `admin` scope).
//!
//! `GET /admin/store` shows its shards (with each node's role in the read
//! list and replay lag), the routing table's version and the bucket moves
//! this logic ran. `POST /admin/store/moves` moves buckets to another shard
//! while pushes go on: it answers 202 at once and moves them one after the
//! other in the background; poll `GET /admin/store` to follow them. One
//! batch of moves runs per logic at a time (409 while one does). A store on
//! `memory://` has nothing to operate (404).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use courier_cluster::StoreAdmin;

use super::auth::AdminKey;
use super::dto::{MoveBody, MoveRequest, MovesStarted, NodeBody, ShardBody, StoreStatusBody};
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use crate::state::LogicState;

/// Most buckets one request may move.
const MAX_MOVES: usize = 1024;

fn no_store() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_sharded_store",
        "the store of record is memory://: there are no shards to operate",
    )
}

fn admin(shared: &LogicState) -> Result<&Arc<dyn StoreAdmin>, ApiError> {
    shared.store_admin.as_ref().ok_or_else(no_store)
}

/// `GET /admin/store`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/store",
    operation_id = "store_status",
    tag = "admin",
    security(("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The store's shards, nodes, routing and moves", body = StoreStatusBody),
        (status = 401, description = "No API key, or one without the `admin` scope", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "The store is `memory://`", body = ErrorBody),
    ),
)]
pub(crate) async fn status(
    State(shared): State<Arc<LogicState>>,
    _: AdminKey,
) -> Result<axum::Json<StoreStatusBody>, ApiError> {
    let admin = admin(&shared)?;
    let status = admin.status();
    Ok(axum::Json(StoreStatusBody {
        buckets: admin.buckets(),
        routing_version: status.routing_version,
        shards: status
            .shards
            .into_iter()
            .map(|s| ShardBody {
                name: s.name,
                ready: s.ready,
                buckets: s.buckets,
                ranges: s.ranges,
                nodes: s
                    .nodes
                    .into_iter()
                    .map(|n| NodeBody {
                        host: n.host,
                        role: n.role,
                        readable: n.readable,
                        lag_ms: n.lag_ms,
                    })
                    .collect(),
            })
            .collect(),
        moves: status.moves.into_iter().map(move_body).collect(),
    }))
}

fn move_body(m: courier_cluster::store_admin::MoveStatus) -> MoveBody {
    let state = serde_json::to_value(m.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    MoveBody {
        bucket: m.bucket,
        from: m.from,
        to: m.to,
        state,
        messages: m.messages,
        streams: m.streams,
        fenced_ms: m.fenced_ms,
        error: m.error,
    }
}

/// `POST /admin/store/moves`.
#[utoipa::path(
    post,
    path = "/api/v1/admin/store/moves",
    operation_id = "move_buckets",
    tag = "admin",
    security(("api_key" = ["admin"])),
    request_body = MoveRequest,
    responses(
        (status = 202, description = "The moves started; follow them in `GET /admin/store`", body = MovesStarted),
        (status = 400, description = "No buckets, too many, a repeated one, one out of range, or an unknown shard", body = ErrorBody),
        (status = 401, description = "No API key, or one without the `admin` scope", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "The store is `memory://`", body = ErrorBody),
        (status = 409, description = "Moves are already running on this logic", body = ErrorBody),
        (status = 413, description = "The body is over `body_limit`", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "A missing or mistyped field", body = ErrorBody),
    ),
)]
pub(crate) async fn start_moves(
    State(shared): State<Arc<LogicState>>,
    _: AdminKey,
    Json(request): Json<MoveRequest>,
) -> Result<(StatusCode, axum::Json<MovesStarted>), ApiError> {
    let admin = admin(&shared)?.clone();
    let buckets = admin.buckets();
    if request.buckets.is_empty() || request.buckets.len() > MAX_MOVES {
        return Err(ApiError::invalid(format!("buckets: 1-{MAX_MOVES} of them")));
    }
    if let Some(b) = request.buckets.iter().find(|b| **b >= buckets) {
        return Err(ApiError::invalid(format!(
            "bucket {b}: the store has buckets 0-{}",
            buckets - 1
        )));
    }
    let distinct: BTreeSet<u32> = request.buckets.iter().copied().collect();
    if distinct.len() != request.buckets.len() {
        return Err(ApiError::invalid("buckets: each at most once"));
    }
    if !admin.status().shards.iter().any(|s| s.name == request.to) {
        return Err(ApiError::invalid(format!(
            "no shard named {:?} is configured",
            request.to
        )));
    }
    let Ok(permit) = shared.store_moves.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "moves_running",
            "moves are already running on this logic; follow them in GET /admin/store",
        ));
    };
    let (list, to) = (request.buckets.clone(), request.to.clone());
    tokio::spawn(async move {
        for bucket in list {
            if let Err(e) = admin.move_bucket(bucket, &to).await {
                tracing::error!(bucket, to = %to, error = %e, "bucket move failed; the rest of the batch is cancelled");
                break;
            }
        }
        drop(permit);
    });
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(MovesStarted {
            buckets: request.buckets,
            to: request.to,
        }),
    ))
}
