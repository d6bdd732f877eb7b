//! The one error type of the SDK.
//!
//! Callers mostly care about a few outcomes (the name is taken, the password is
//! wrong, the server refused a request, we were kicked, it timed out), so each
//! has its own variant; transport details are kept as text or as the source
//! error for logs.

use courier_proto::CodecError;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `POST /users`: the username is already taken (HTTP 409).
    #[error("already exists")]
    Conflict,
    /// `POST /login` (or a route needing the user's token): bad credentials (HTTP 401).
    #[error("unauthorized")]
    Unauthorized,
    /// Any other HTTP error status, with logic's `{"error":{"code","message"}}`.
    #[error("HTTP {status}: {code}: {message}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The `error.code` of the reply body (empty when the body had none).
        code: String,
        /// The `error.message` of the reply body, or the raw body.
        message: String,
    },
    /// The HTTP request could not be made or its reply not read.
    #[error("HTTP request failed: {0}")]
    Request(#[from] reqwest::Error),
    /// The comet answered a request with an `Error` frame.
    #[error("server error {code}: {message}")]
    Server {
        /// An `ErrorCode` value.
        code: i32,
        /// The server's explanation.
        message: String,
    },
    /// The server closed this client on purpose (`Kick`); it will not reconnect.
    #[error("kicked: {0}")]
    Kicked(String),
    /// No reply within `request_timeout` (including waiting for a reconnect).
    #[error("timed out")]
    Timeout,
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// Login returned no comet, or none of them could be reached.
    #[error("no comet reachable: {0}")]
    NoComet(String),
    /// The socket failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The byte stream from the comet was not valid frames.
    #[error("bad frame from server: {0}")]
    Codec(#[from] CodecError),
    /// The server answered with something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The comet refused the request as over one of its per-connection
    /// rates (`ERROR_CODE_RATE_LIMITED`); it may succeed a moment later.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, ClientError::Server { code, .. }
            if *code == courier_proto::client::ErrorCode::RateLimited as i32)
    }
}
