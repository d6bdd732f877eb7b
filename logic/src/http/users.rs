//! `POST /users` (register), `POST /login`, `POST /logout` (revokes the
//! token it carries) and `POST /password` (a new password revokes every
//! token of the user issued until then, and the reply carries a new one).
//! A revoked token closes its connections on every comet as soon as the
//! revocation reaches them ([`crate::revocations`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::auth::{login_budget, AuthRate, UserToken};
use super::dto::{
    AppCredentials, CometAddr, Credentials, LoggedIn, PasswordChange, Registered, MAX_CREDENTIALS,
};
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use super::responses::{BackendUnavailable, CredentialsFailures};
use crate::hooks::token_life;
use crate::revocations::RevokeError;
use crate::state::LogicState;
use courier_proto::names;

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
    logged_in(&shared, uid).map(axum::Json)
}

/// A fresh token for `uid`, with the comets to connect to.
fn logged_in(shared: &LogicState, uid: String) -> Result<LoggedIn, ApiError> {
    logged_in_for(shared, uid, shared.config.token_ttl, Vec::new())
}

/// A token for `uid` that lives `ttl`, the comets, and `rooms` to join.
fn logged_in_for(
    shared: &LogicState,
    uid: String,
    ttl: std::time::Duration,
    rooms: Vec<String>,
) -> Result<LoggedIn, ApiError> {
    let token = shared.tokens.issue(&uid, ttl).map_err(|e| {
        tracing::error!(error = %e, "cannot sign token");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    })?;
    let comets = shared.comets.ranked().iter().map(CometAddr::from).collect();
    Ok(LoggedIn {
        uid,
        token,
        expires_in: ttl.as_secs(),
        heartbeat_secs: shared.config.heartbeat_secs(),
        comets,
        rooms,
    })
}

/// Exchanges the application's own credentials for a Courier token: the
/// connect hook says who they belong to (and which rooms to join, and for
/// how long), so the application need not mint Courier tokens itself.
#[utoipa::path(
    post,
    path = "/api/v1/connect",
    operation_id = "connect",
    tag = "users",
    request_body = AppCredentials,
    responses(
        (status = 200, description = "The application vouched for the credentials: a token for its uid, the comets, and rooms to join", body = LoggedIn),
        (status = 400, description = "Malformed JSON, or credentials empty or over 4096 bytes", body = ErrorBody),
        (status = 401, description = "The application refused the credentials", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No connect hook is configured", body = ErrorBody),
        (status = 409, description = "The application named a uid registered with a password", body = ErrorBody),
        (status = 429, description = "Too many register/login requests from this address", body = ErrorBody),
        CredentialsFailures,
    ),
)]
pub(crate) async fn connect(
    State(shared): State<Arc<LogicState>>,
    AuthRate(ip): AuthRate,
    Json(body): Json<AppCredentials>,
) -> Result<axum::Json<LoggedIn>, ApiError> {
    if !shared.hooks.has_connect() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_connect_hook",
            "this server has no connect hook; log in with a username and password",
        ));
    }
    if body.credentials.is_empty() || body.credentials.len() > MAX_CREDENTIALS {
        return Err(ApiError::invalid(format!(
            "credentials must be 1-{MAX_CREDENTIALS} bytes"
        )));
    }
    let hook_failed = || {
        ApiError::busy(
            "hook_unavailable",
            "the application did not answer; retry shortly",
        )
    };
    let answer = match shared
        .hooks
        .connect(&body.credentials, &ip.to_string())
        .await
    {
        Ok(Some(answer)) => answer,
        Ok(None) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "the application refused the credentials",
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "connect hook failed");
            return Err(hook_failed());
        }
    };
    let valid = names::check_uid(&answer.uid).is_ok()
        && answer.rooms.len() <= MAX_HOOK_ROOMS
        && answer.rooms.iter().all(|r| names::check_room(r).is_ok());
    if !valid {
        tracing::warn!("the connect hook answered an invalid uid or room list");
        return Err(hook_failed());
    }
    // Known to Courier from now on: others may send to it. A uid someone
    // registered with a password is theirs, whatever the application says.
    if !shared.accounts.introduce(&answer.uid).await? {
        tracing::warn!(uid = %answer.uid, "the connect hook named a uid registered with a password");
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "uid_registered",
            "the application named a uid that belongs to a password account",
        ));
    }
    let ttl = token_life(&answer, shared.config.token_ttl);
    tracing::info!(uid = %answer.uid, "connected through the connect hook");
    logged_in_for(&shared, answer.uid, ttl, answer.rooms).map(axum::Json)
}

/// Most rooms the connect hook may name.
const MAX_HOOK_ROOMS: usize = 64;

/// Revokes the token the request carries: it opens no connection again,
/// and the connections holding it are closed (`Kick`, "token revoked").
#[utoipa::path(
    post,
    path = "/api/v1/logout",
    operation_id = "logout",
    tag = "users",
    security(("user_token" = [])),
    responses(
        (status = 204, description = "The token is revoked"),
        (status = 400, description = "A token without an id (minted by a backend): revoke every token of the user instead", body = ErrorBody),
        (status = 401, description = "No token, an invalid one, or one already revoked", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 429, description = "More logouts than the login budget allows, from this address or for this user", body = ErrorBody),
        BackendUnavailable,
    ),
)]
pub(crate) async fn logout(
    State(shared): State<Arc<LogicState>>,
    AuthRate(ip): AuthRate,
    UserToken(claims): UserToken,
) -> Result<StatusCode, ApiError> {
    // Each logout is a record every node keeps until the token expires:
    // as many as logins, no more.
    login_budget(&shared, ip, &claims.sub)?;
    shared
        .revocations
        .revoke_token(&claims)
        .await
        .map_err(|e| match e {
            RevokeError::NoId => {
                ApiError::new(StatusCode::BAD_REQUEST, "token_has_no_id", e.to_string())
            }
            RevokeError::Cluster(e) => ApiError::unavailable(&e),
        })?;
    tracing::info!(uid = %claims.sub, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the password of the token's user, revokes every token of the
/// user issued until now (closing their connections), and returns a new
/// token.
#[utoipa::path(
    post,
    path = "/api/v1/password",
    operation_id = "change_password",
    tag = "users",
    security(("user_token" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; a new token (every older one is revoked)", body = LoggedIn),
        (status = 400, description = "Malformed JSON, or a new password the rules refuse", body = ErrorBody),
        (status = 401, description = "No token, an invalid or revoked one, a wrong current password, or a user without an account", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 429, description = "Too many password checks from this address, or for this user from it", body = ErrorBody),
        (status = 500, description = "Password hashing or token signing failed", body = ErrorBody),
        CredentialsFailures,
    ),
)]
pub(crate) async fn change_password(
    State(shared): State<Arc<LogicState>>,
    AuthRate(ip): AuthRate,
    UserToken(claims): UserToken,
    Json(body): Json<PasswordChange>,
) -> Result<axum::Json<LoggedIn>, ApiError> {
    let uid = claims.sub;
    login_budget(&shared, ip, &uid)?;
    let hash = shared
        .accounts
        .new_password_hash(&uid, &body.old_password, &body.new_password)
        .await?;
    // Revoked first: if the store then fails, the old tokens are gone
    // anyway (harmless), never the other way round.
    shared.revocations.revoke_all(&uid).await?;
    shared.accounts.store_password(&uid, &hash).await?;
    tracing::info!(%uid, "password changed; older tokens revoked");
    logged_in(&shared, uid).map(axum::Json)
}
