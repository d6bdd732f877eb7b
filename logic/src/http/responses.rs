//! Error responses that several routes document alike, for their
//! `#[utoipa::path(responses(...))]` lists: each type here is a set of
//! responses (`utoipa::IntoResponses`), listed next to a route's own tuples,
//! e.g. `responses((status = 202, ...), (status = 400, ...), PushFailures)`.
//! What differs per route (the success, the 400's wording) stays inline.
//!
//! Every body is [`ErrorBody`] (`ApiError` in the document); the 401s carry
//! `WWW-Authenticate: Bearer` and the 503s `Retry-After: 1`, as
//! [`super::error::ApiError`] sends them. The types only describe replies:
//! nothing constructs them.
#![expect(dead_code, reason = "the types only describe responses")]

use utoipa::IntoResponses;

use super::error::ErrorBody;

/// The failures every `POST /push/*` route shares.
#[derive(IntoResponses)]
pub(crate) enum PushFailures {
    #[response(
        status = 401,
        description = "No API key, or one without the `push` scope",
        headers(("WWW-Authenticate" = String, description = "`Bearer`"))
    )]
    Unauthorized(ErrorBody),
    #[response(
        status = 413,
        description = "The body is over the server's limit, or `data` over the largest message"
    )]
    TooLarge(ErrorBody),
    #[response(status = 415, description = "The body is not `application/json`")]
    NotJson(ErrorBody),
    #[response(
        status = 422,
        description = "The JSON does not fit the body's shape (missing or unknown field, wrong type)"
    )]
    BadShape(ErrorBody),
    #[response(
        status = 503,
        description = "A backend is unavailable; nothing is known to be delivered",
        headers(("Retry-After" = u32, description = "Seconds to wait: 1"))
    )]
    Unavailable(ErrorBody),
}

/// The failures `POST /users` and `POST /login` share (their 401, 429 and
/// 500 differ).
#[derive(IntoResponses)]
pub(crate) enum CredentialsFailures {
    #[response(status = 413, description = "The body is over the server's limit")]
    TooLarge(ErrorBody),
    #[response(status = 415, description = "The body is not `application/json`")]
    NotJson(ErrorBody),
    #[response(
        status = 422,
        description = "The JSON does not fit the body's shape (missing or unknown field)"
    )]
    BadShape(ErrorBody),
    #[response(
        status = 503,
        description = "A backend is unavailable, or too many logins at once",
        headers(("Retry-After" = u32, description = "Seconds to wait: 1"))
    )]
    Unavailable(ErrorBody),
}

/// The 401 of the routes that take only an API key with the `read` scope.
#[derive(IntoResponses)]
#[response(
    status = 401,
    description = "No API key, or one without the `read` scope",
    headers(("WWW-Authenticate" = String, description = "`Bearer`"))
)]
pub(crate) struct ReadUnauthorized(ErrorBody);

/// The failures of the routes that take a `read` API key or a user's token
/// (`/presence`, `/nodes`).
#[derive(IntoResponses)]
pub(crate) enum UserOrReaderFailures {
    #[response(
        status = 401,
        description = "Neither an API key with the `read` scope nor a valid user token",
        headers(("WWW-Authenticate" = String, description = "`Bearer`"))
    )]
    Unauthorized(ErrorBody),
    #[response(
        status = 429,
        description = "A user token over that user's read budget (API keys are not limited)"
    )]
    OverBudget(ErrorBody),
}

/// The 503 of the read routes.
#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "A backend is unavailable",
    headers(("Retry-After" = u32, description = "Seconds to wait: 1"))
)]
pub(crate) struct BackendUnavailable(ErrorBody);
