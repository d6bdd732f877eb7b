//! The HTTP API under `/api/v1`, plus the operations endpoints every
//! service serves: `/metrics`, `/healthz` and `/readyz` (the same handlers
//! as comet's and job's admin listeners, from `courier_runtime::admin`).
//! `GET /api/v1/openapi.json` describes all of them (see `openapi.rs`).
//!
//! Handlers are thin: an extractor authenticates (or rate-limits), another
//! parses the body into a DTO with the API's error shape, and the handler
//! calls into accounts, publishing or the session store. Bodies are capped at
//! `body_limit` (413 beyond), and every unmatched route or method is a JSON
//! 404/405 like any other error.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use courier_runtime::admin;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::state::LogicState;

mod auth;
pub(crate) mod dto;
mod error;
mod extract;
mod messages;
mod online;
mod openapi;
mod operate;
mod push;
mod push_batch;
mod responses;
mod rooms;
pub(crate) mod serve;
mod store;
mod users;
mod web;

pub(crate) use error::ApiError;

/// The whole HTTP API over `shared`.
pub(crate) fn router(shared: Arc<LogicState>) -> Router {
    let body_limit = shared.config.body_limit;
    let api = Router::new()
        .route("/users", post(users::register))
        .route("/login", post(users::login))
        .route("/logout", post(users::logout))
        .route("/connect", post(users::connect))
        .route("/password", post(users::change_password))
        .route("/push/users", post(push::users))
        .route("/push/keys", post(push::keys))
        .route("/push/rooms/{room}", post(push::room))
        .route("/push/all", post(push::all))
        .route("/push/batch", post(push_batch::batch))
        .route("/online", get(online::online))
        .route("/online/users", get(online::users))
        .route("/online/rooms", get(online::top_rooms))
        .route("/online/rooms/{room}", get(online::room))
        .route("/presence", get(online::presence))
        .route("/nodes", get(online::nodes))
        .route("/users/{uid}/messages", get(messages::user))
        .route("/users/{uid}/disconnect", post(operate::disconnect_user))
        .route("/rooms/{room}/messages", get(messages::room))
        .route("/rooms/{room}", get(rooms::rule).put(rooms::set_rule))
        .route(
            "/rooms/{room}/members",
            get(rooms::members).post(rooms::add_members),
        )
        .route("/rooms/{room}/members/{uid}", delete(rooms::remove_member))
        .route("/admin/comets/{id}/drain", post(operate::drain_comet))
        .route("/admin/store", get(store::status))
        .route("/admin/store/moves", post(store::start_moves))
        .route("/openapi.json", get(openapi::openapi_json));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            shared.config.request_timeout,
        ))
        // Outside the timeout, so a 408 is measured too.
        .layer(axum::middleware::from_fn(crate::metrics::http_duration))
        .layer(TraceLayer::new_for_http())
        .with_state(shared)
}

/// `GET /healthz`: [`admin::healthz`], documented.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses(
        (status = 200, description = "`ok` whenever the process answers", body = String, content_type = "text/plain"),
    ),
)]
async fn healthz() -> &'static str {
    admin::healthz().await
}

/// `GET /readyz`: whether this logic takes traffic.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "`ready`", body = String, content_type = "text/plain"),
        (status = 503, description = "`not ready`", body = String, content_type = "text/plain"),
    ),
)]
async fn readyz(State(shared): State<Arc<LogicState>>) -> Response {
    admin::readiness_reply(&shared.readiness)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
