//! The error `bind`, `run` and `serve` return: start-up and serving
//! failures. Request-level failures never reach it; they are answered as
//! HTTP errors or gRPC statuses at the edge, and logged here, throttled.

/// Why logic could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LogicError {
    /// The configuration cannot work (e.g. no JWT secret).
    #[error("invalid logic config: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which listener (`http` or `grpc`).
        what: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A cluster backend failed at start-up (discovery watch, registration).
    #[error("cluster backend: {0}")]
    Cluster(#[from] courier_cluster::Error),
    /// A server stopped with an error.
    #[error("{what} server: {message}")]
    Serve {
        /// Which server (`http` or `grpc`).
        what: &'static str,
        /// What it reported.
        message: String,
    },
}

/// Logs a failed backend call: the first at once, then one per 10 s with
/// how many were held back, however many requests fail meanwhile.
pub(crate) fn log_backend_failure(e: &courier_cluster::Error) {
    static THROTTLE: std::sync::LazyLock<courier_runtime::throttle::Throttle> =
        std::sync::LazyLock::new(|| {
            courier_runtime::throttle::Throttle::new(std::time::Duration::from_secs(10))
        });
    if let Some(suppressed) = THROTTLE.admit() {
        tracing::warn!(error = %e, suppressed, "backend failure");
    }
}
