//! Who may call what.
//!
//! Push routes take the backend's API key as a Bearer token, compared in
//! constant time. Read-only admin routes (`/online*`, `/nodes`) also take a
//! user's login token, so a chat client can show who is online with the
//! token it already has. Register and login are public but limited per
//! client IP; the IP is the TCP peer's (a proxy in front should limit on its
//! own, since forwarded headers are not trusted here).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use super::error::ApiError;
use crate::state::LogicState;

/// The request carried the API key.
pub(crate) struct ApiKey;

/// The request carried the API key or a valid user token.
pub(crate) struct AdminReader;

/// The client IP is within its register/login budget.
pub(crate) struct AuthRate;

impl FromRequestParts<Arc<LogicState>> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<LogicState>,
    ) -> Result<Self, Self::Rejection> {
        require_bearer(parts, |token| is_api_key(shared, token), "invalid API key")?;
        Ok(Self)
    }
}

impl FromRequestParts<Arc<LogicState>> for AdminReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<LogicState>,
    ) -> Result<Self, Self::Rejection> {
        require_bearer(
            parts,
            |token| is_api_key(shared, token) || shared.tokens.verify(token).is_ok(),
            "invalid API key or token",
        )?;
        Ok(Self)
    }
}

impl FromRequestParts<Arc<LogicState>> for AuthRate {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<LogicState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(limiter) = &shared.auth_limiter else {
            return Ok(Self);
        };
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        match limiter.check_key(&ip) {
            Ok(()) => Ok(Self),
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

/// Passes if the request's Bearer token is `accepted`; otherwise the
/// request is unauthorized with `rejection` as the reason.
fn require_bearer(
    parts: &Parts,
    accepted: impl FnOnce(&str) -> bool,
    rejection: &'static str,
) -> Result<(), ApiError> {
    if accepted(bearer(parts)?) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(rejection))
    }
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

fn is_api_key(shared: &LogicState, token: &str) -> bool {
    let key = shared.config.api_key.as_bytes();
    !key.is_empty() && constant_time_eq(key, token.as_bytes())
}

/// Compares without stopping at the first difference, so timing does not
/// reveal how much of a guess was right. (Length is not secret.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_bytes() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(constant_time_eq(b"", b""));
    }
}
