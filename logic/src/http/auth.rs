//! Who may call what.
//!
//! Keyed routes take an API key as a Bearer token ([`crate::keys`]): push
//! routes need the `push` scope, the full listings and message history the
//! `read` scope, operating the cluster the `admin` scope. A user's login
//! token opens only what a chat user needs (the presence of named users,
//! the comet list to reconnect with), rate-limited per user. Register and
//! login are public but limited per client IP; the IP is the TCP peer's (a
//! proxy in front should limit on its own, since forwarded headers are not
//! trusted here).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use super::error::ApiError;
use crate::keys::Scope;
use crate::state::LogicState;

/// The request carried a key with the `push` scope; its name.
pub(crate) struct PushKey(pub(crate) String);

/// The request carried a key with the `read` scope.
pub(crate) struct ReadKey;

/// The request carried a key with the `rooms` scope.
pub(crate) struct RoomsKey;

/// The request carried a key with the `admin` scope.
pub(crate) struct AdminKey;

/// The request carried a `read` key, or a user's token within that user's
/// read budget.
pub(crate) enum UserOrReader {
    User,
    Key,
}

/// The request carried a user's token, valid and not revoked: its claims.
pub(crate) struct UserToken(pub(crate) courier_runtime::Claims);

impl FromRequestParts<Arc<LogicState>> for UserToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<LogicState>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        user_claims(shared, token).map(Self)
    }
}

/// The claims of a user's token that is valid and not revoked.
fn user_claims(shared: &LogicState, token: &str) -> Result<courier_runtime::Claims, ApiError> {
    let claims = shared
        .tokens
        .verify(token)
        .map_err(|_| ApiError::unauthorized("invalid token"))?;
    if shared.revocations.revokes(&claims) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_revoked",
            "this token was revoked; log in again",
        ));
    }
    Ok(claims)
}

/// The client IP is within its register/login budget; it carries the IP
/// for the per-user login budget ([`login_budget`]).
pub(crate) struct AuthRate(pub(crate) IpAddr);

/// The name of the request's Bearer key if it has `scope`.
fn require_key(parts: &Parts, shared: &LogicState, scope: Scope) -> Result<String, ApiError> {
    let token = bearer(parts)?;
    match shared.api_keys.check(token, scope) {
        Some(name) => {
            tracing::trace!(key = name, ?scope, "api key accepted");
            Ok(name.to_owned())
        }
        None => Err(ApiError::unauthorized(match scope {
            Scope::Push => "invalid API key or no push scope",
            Scope::Read => "invalid API key or no read scope",
            Scope::Admin => "invalid API key or no admin scope",
            Scope::Rooms => "invalid API key or no rooms scope",
        })),
    }
}

macro_rules! scoped_key {
    ($name:ident, $scope:expr, $make:expr) => {
        impl FromRequestParts<Arc<LogicState>> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                shared: &Arc<LogicState>,
            ) -> Result<Self, Self::Rejection> {
                require_key(parts, shared, $scope).map($make)
            }
        }
    };
    ($name:ident, $scope:expr) => {
        scoped_key!($name, $scope, |_| Self);
    };
}

// A push's key name scopes its idempotency keys.
scoped_key!(PushKey, Scope::Push, Self);
scoped_key!(ReadKey, Scope::Read);
scoped_key!(AdminKey, Scope::Admin);
scoped_key!(RoomsKey, Scope::Rooms);

impl FromRequestParts<Arc<LogicState>> for UserOrReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<LogicState>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        if shared.api_keys.check(token, Scope::Read).is_some() {
            return Ok(Self::Key);
        }
        let uid = user_claims(shared, token)
            .map_err(|e| match e.code() {
                "token_revoked" => e,
                _ => ApiError::unauthorized("invalid API key or token"),
            })?
            .sub;
        if let Some(limiter) = &shared.read_limiter {
            if limiter.check_key(&uid).is_err() {
                metrics::counter!("courier_logic_user_reads_limited_total").increment(1);
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many reads for this user; retry in a minute",
                ));
            }
        }
        Ok(Self::User)
    }
}

impl FromRequestParts<Arc<LogicState>> for AuthRate {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<LogicState>,
    ) -> Result<Self, Self::Rejection> {
        // One client is one IPv4 address or one IPv6 /64.
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| {
                courier_runtime::net::client_net(c.0.ip())
            });
        let Some(limiter) = &shared.auth_limiter else {
            return Ok(Self(ip));
        };
        match limiter.check_key(&ip) {
            Ok(()) => Ok(Self(ip)),
            Err(_) => {
                metrics::counter!("courier_logic_auth_rate_limited_total").increment(1);
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many register/login requests from this address; retry in a minute",
                ))
            }
        }
    }
}

/// Whether `username` may try to log in from `ip` now (its own bucket, so
/// guessing one account's password is slowed without refusing the other
/// users behind the same address). A name that cannot be an account is
/// refused as wrong credentials before it takes a bucket: the buckets hold
/// only valid names, at most [`MAX_USERNAME`] bytes each.
///
/// [`MAX_USERNAME`]: crate::accounts::MAX_USERNAME
pub(crate) fn login_budget(
    shared: &LogicState,
    ip: IpAddr,
    username: &str,
) -> Result<(), ApiError> {
    if !crate::accounts::valid_username(username) {
        return Err(crate::accounts::AccountError::BadCredentials.into());
    }
    let Some(limiter) = &shared.login_limiter else {
        return Ok(());
    };
    limiter.check_key(&(ip, username.to_owned())).map_err(|_| {
        metrics::counter!("courier_logic_login_rate_limited_total").increment(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many logins for this user from this address; retry in a minute",
        )
    })
}

/// The Bearer token of the request.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer header"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))
}
