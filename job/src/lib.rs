//! Courier's job: consumes the queue and delivers each envelope to the comets
//! that hold its recipients.
//!
//! Logic has already resolved every message to `(comet, keys)`, a room and
//! the comets holding its members, everyone, or a kick; job only delivers.
//! The shape:
//!
//! ```text
//!  queue ──▶ consumer loop ──▶ one ordered, bounded queue per comet ──▶ worker ──gRPC──▶ comet
//!              ▲  (tracker)                                                │
//!              └──────────────── Done (every push of a message answered) ◀─┘
//! ```
//!
//! - `consume`: the single consumer loop decodes envelopes, fans them out
//!   to the workers and commits offsets;
//! - `push`: what goes to one comet (`CometPush`): the encoded
//!   message as logic wrote it, never decoded here;
//! - `tracker`: which offsets may be committed when deliveries finish out of
//!   order across comets (at-least-once);
//! - `ticket`: how a fanned-out delivery learns it is done;
//! - `comets`: discovery watch -> one worker per comet;
//! - `worker` and `batch`: per-comet ordered delivery with retries and
//!   room batching;
//! - `service`: [`Job`], binding the admin listener (`/metrics`,
//!   `/healthz`, `/readyz`) and running the rest until shutdown.
//!
//! A broadcast goes to every comet at once, with its `rate`: each comet
//! paces its own connections (broadcast is best effort by design).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod backlog;
mod batch;
mod comets;
mod config;
mod consume;
mod error;
mod metrics;
mod push;
mod service;
mod ticket;
mod tracker;
mod worker;

use std::sync::Arc;

use courier_cluster::{Discovery, Queue};
use tokio_util::sync::CancellationToken;

pub use self::metrics::describe as describe_metrics;
pub use config::JobConfig;
pub use error::JobError;
pub use service::Job;

/// The cluster state job works against.
#[derive(Clone)]
pub struct JobDeps {
    /// The topic logic publishes to.
    pub queue: Arc<dyn Queue>,
    /// Where the comets are.
    pub discovery: Arc<dyn Discovery>,
}

impl std::fmt::Debug for JobDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDeps").finish_non_exhaustive()
    }
}

/// Runs a job until `shutdown` fires: [`Job::bind`] then [`Job::run`].
///
/// Joins consumer group `config.group`, follows the comets in discovery and
/// delivers every consumed envelope, committing an offset only once every
/// comet push it caused has answered (or its comet left discovery).
///
/// On shutdown it stops consuming, lets the workers send what is already
/// queued for at most `push_timeout`, commits what finished and returns.
/// Anything unfinished stays uncommitted and is consumed again by the group.
/// Fails at once if the admin listener cannot be bound.
pub async fn serve(
    config: JobConfig,
    deps: JobDeps,
    shutdown: CancellationToken,
) -> Result<(), JobError> {
    Job::bind(config, deps).await?.run(shutdown).await
}
