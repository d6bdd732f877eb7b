//! `POST /users` (register) and `POST /login`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::auth::{login_budget, AuthRate};
use super::dto::{CometAddr, Credentials, LoggedIn, Registered};
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use super::responses::CredentialsFailures;
use crate::state::LogicState;

/// Creates an account: `201 {uid}`, `409` if taken, `400` if invalid.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "register",
    tag = "users",
    request_body = Credentials,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "Malformed JSON, or a username or password the rules refuse", body = ErrorBody),
        (status = 409, description = "The username is taken", body = ErrorBody),
        (status = 429, description = "Too many register/login requests from this address", body = ErrorBody),
        (status = 500, description = "Password hashing failed", body = ErrorBody),
        CredentialsFailures,
    ),
)]
pub(crate) async fn register(
    State(shared): State<Arc<LogicState>>,
    _: AuthRate,
    Json(body): Json<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    let uid = shared
        .accounts
        .register(&body.username, &body.password)
        .await?;
    tracing::info!(%uid, "registered");
    Ok((StatusCode::CREATED, axum::Json(Registered { uid })))
}

/// Checks credentials and issues a token, with the comets to connect to.
#[utoipa::path(
    post,
    path = "/api/v1/login",
    operation_id = "login",
    tag = "users",
    request_body = Credentials,
    responses(
        (status = 200, description = "A user token and the comets to connect to", body = LoggedIn),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Wrong username or password", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 429, description = "Too many logins from this address, or for this user from it", body = ErrorBody),
        (status = 500, description = "Password hashing or token signing failed", body = ErrorBody),
        CredentialsFailures,
    ),
)]
pub(crate) async fn login(
    State(shared): State<Arc<LogicState>>,
    AuthRate(ip): AuthRate,
    Json(body): Json<Credentials>,
) -> Result<axum::Json<LoggedIn>, ApiError> {
    login_budget(&shared, ip, &body.username)?;
    let uid = shared
        .accounts
        .login(&body.username, &body.password)
        .await?;
    let ttl = shared.config.token_ttl;
    let token = shared.tokens.issue(&uid, ttl).map_err(|e| {
        tracing::error!(error = %e, "cannot sign token");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    })?;
    let comets = shared.comets.ranked().iter().map(CometAddr::from).collect();
    Ok(axum::Json(LoggedIn {
        uid,
        token,
        expires_in: ttl.as_secs(),
        heartbeat_secs: shared.config.heartbeat_secs(),
        comets,
    }))
}
