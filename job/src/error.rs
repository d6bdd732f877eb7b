//! Why a job stops. Per-message problems (an undecodable envelope, a comet
//! that fails) are logged and counted, never returned: they must not stop the
//! consumer.

/// Why [`serve`](crate::serve) returned an error.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The configuration is unusable.
    #[error("invalid job config: {0}")]
    Config(String),
    /// The admin listener could not be bound.
    #[error("binding the admin listener on {addr}: {source}")]
    Bind {
        /// The configured `admin_addr`.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// Joining the consumer group failed.
    #[error("subscribing to consumer group `{group}`: {source}")]
    Subscribe {
        /// The consumer group.
        group: String,
        /// The queue backend's error.
        #[source]
        source: courier_cluster::Error,
    },
    /// Watching the comets in discovery failed.
    #[error("watching comets in discovery: {0}")]
    Discovery(#[source] courier_cluster::Error),
    /// The queue closed the consumer while the job was running.
    #[error("the queue consumer closed")]
    ConsumerClosed,
}
