//! The one error shape of the HTTP API: `{"error":{"code","message"}}` with a
//! status that says what was wrong.
//!
//! Every failure a handler or extractor can meet converts into [`ApiError`]:
//! axum's own rejections (bad JSON, oversize body, bad path or query) keep
//! their status and text, backend failures become 503, and nothing renders
//! as an empty or plain-text body.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::accounts::AccountError;
use crate::publish::PublishError;

/// An HTTP error reply.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The body of every error reply, `{"error": {"code", "message"}}`;
/// `ApiError` in the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiError)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiErrorDetail)]
pub(crate) struct ErrorDetail {
    /// Machine-readable and stable, e.g. `invalid_request`, `unauthorized`,
    /// `malformed_json`, `rate_limited`, `unavailable`.
    #[schema(example = "invalid_request")]
    code: &'static str,
    /// For a human; its wording may change.
    message: String,
}

impl ApiError {
    /// An error with this status, machine-readable code and message.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The machine-readable code.
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable message.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// 400 for a request that parsed but is not acceptable.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 503 for a backend that failed. The backend's own text (addresses,
    /// driver errors) goes to the log, never to the client.
    pub(crate) fn unavailable(e: &courier_cluster::Error) -> Self {
        crate::error::log_backend_failure(e);
        Self::busy("unavailable", "a backend is unavailable; retry shortly")
    }

    /// 503 with `Retry-After: 1`: try again soon.
    pub(crate) fn busy(code: &'static str, message: &'static str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<courier_cluster::Error> for ApiError {
    fn from(e: courier_cluster::Error) -> Self {
        Self::unavailable(&e)
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Reused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                e.to_string(),
            ),
            PublishError::Cluster(e) => Self::unavailable(&e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match &r {
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::JsonDataError(_) => "invalid_body",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            _ => "bad_body",
        };
        Self::new(status, code, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::new(r.status(), "invalid_path", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(r.status(), "invalid_query", r.body_text())
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let message = e.to_string();
        match e {
            AccountError::InvalidUsername | AccountError::InvalidPassword => Self::invalid(message),
            AccountError::Taken => Self::new(StatusCode::CONFLICT, "username_taken", message),
            AccountError::BadCredentials => {
                Self::new(StatusCode::UNAUTHORIZED, "bad_credentials", message)
            }
            AccountError::Cluster(e) => Self::unavailable(&e),
            AccountError::Busy => Self::busy("busy", "too many logins at once; retry shortly"),
            AccountError::Hashing(m) => {
                tracing::error!(error = %m, "password hashing failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}
