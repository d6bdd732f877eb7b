//! Why a comet could not start or stopped abnormally.
//!
//! Per-connection failures never surface here: they become `Error` frames to
//! that one client and a log line.

use std::net::SocketAddr;

/// A comet-level failure.
#[derive(Debug, thiserror::Error)]
pub enum CometError {
    /// The configuration is unusable.
    #[error("invalid comet config: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot bind the {listener} listener on {addr}: {source}")]
    Bind {
        /// Which listener (`tcp`, `grpc`).
        listener: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Discovery refused a registration or a watch.
    #[error("discovery: {0}")]
    Discovery(#[from] courier_cluster::Error),
    /// The gRPC push service failed.
    #[error("gRPC push service: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// A task of the comet panicked.
    #[error("comet task failed: {0}")]
    Task(String),
}
