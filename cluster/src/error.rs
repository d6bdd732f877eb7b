//! The one error type of the cluster backends.

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL names no known backend or is malformed.
    #[error("bad backend URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    /// The backend could not be reached or refused the call. Retry later.
    #[error("{backend} unavailable: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },
    /// The backend returned something this code cannot interpret.
    #[error("{backend} returned invalid data: {message}")]
    Corrupt {
        backend: &'static str,
        message: String,
    },
    /// The consumer or registration was closed.
    #[error("closed")]
    Closed,
}

impl Error {
    pub(crate) fn bad_url(url: &str, reason: impl Into<String>) -> Self {
        Self::BadUrl {
            url: url.to_owned(),
            reason: reason.into(),
        }
    }
    #[cfg_attr(
        not(any(
            feature = "redis",
            feature = "postgres",
            feature = "kafka",
            feature = "etcd"
        )),
        allow(dead_code)
    )]
    pub(crate) fn unavailable(backend: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            backend,
            message: e.to_string(),
        }
    }
    pub(crate) fn corrupt(backend: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            backend,
            message: e.to_string(),
        }
    }
}

/// Result of a backend call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
