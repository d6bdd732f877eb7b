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
    /// The TLS settings of the backends (the `backend_ca` file) cannot be
    /// used.
    #[error("backend TLS: {message}")]
    Tls { message: String },
}

impl Error {
    /// A URL refused, for `reason`; its password (if any) never reaches the
    /// error.
    pub(crate) fn bad_url(url: &str, reason: impl Into<String>) -> Self {
        Self::BadUrl {
            url: redacted(url),
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
    pub(crate) fn tls(message: impl Into<String>) -> Self {
        Self::Tls {
            message: message.into(),
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

/// `url` with any password in it replaced by `***`: the one in
/// `scheme://user:password@host`, and `password=...` in a query string or
/// a `key=value` connection string. For messages and logs.
pub fn redacted(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme) = out.find("://") {
        let rest = scheme + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@').map(|i| rest + i) {
            if let Some(colon) = out[rest..at].find(':').map(|i| rest + i) {
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    let mut from = 0;
    while let Some(i) = out[from..].to_ascii_lowercase().find("password=") {
        let start = from + i + "password=".len();
        let end = out[start..]
            .find(['&', ' ', '\t'])
            .map_or(out.len(), |j| start + j);
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

/// `e` and the errors under it, `: `-separated. Some clients' errors say
/// only what kind they are ("transport error", "db error", "error
/// performing TLS handshake"); the failure that explains it is beneath.
#[cfg(any(feature = "etcd", feature = "postgres"))]
pub(crate) fn with_sources(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redacted("postgres://courier:s3cret@h1:5432,h2:5433/courier"),
            "postgres://courier:***@h1:5432,h2:5433/courier"
        );
        assert_eq!(
            redacted("redis://:pw@127.0.0.1:6379"),
            "redis://:***@127.0.0.1:6379"
        );
        assert_eq!(
            redacted("postgres://h/db?user=u&password=pw&sslmode=disable"),
            "postgres://h/db?user=u&password=***&sslmode=disable"
        );
        assert_eq!(
            redacted("host=h user=u password=pw dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(
            redacted("postgres://courier@h1/db"),
            "postgres://courier@h1/db"
        );
        assert_eq!(
            redacted("postgres://u@h/db?x=a@b"),
            "postgres://u@h/db?x=a@b"
        );
        assert!(!Error::bad_url("postgres://u:pw@h/db", "x")
            .to_string()
            .contains("pw"));
    }
}
