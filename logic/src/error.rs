//! The error `bind`, `run` and `serve` return: start-up and serving
//! failures. Request-level failures never reach it; they are answered as
//! HTTP errors or gRPC statuses at the edge.

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
